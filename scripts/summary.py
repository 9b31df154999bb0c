#!/usr/bin/env python
"""Thin wrapper over :func:`kerasnets.training.cli.summary_main`; ``--help`` lists the options."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.training.cli import summary_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(summary_main(prog="summary.py"))
