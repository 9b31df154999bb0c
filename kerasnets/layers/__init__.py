"""Layers and blocks shared by the model families."""

from kerasnets.layers.conv import DepthwiseConv2D, GroupConv2D

__all__ = ["DepthwiseConv2D", "GroupConv2D"]
