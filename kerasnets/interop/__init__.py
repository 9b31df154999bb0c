"""Interoperability with other frameworks."""
