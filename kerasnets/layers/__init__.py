"""Layers and blocks shared by the model families."""

from kerasnets.layers.conv import DepthwiseConv2D, GroupConv2D
from kerasnets.layers.pooling import AdaptiveAveragePooling2D

__all__ = ["AdaptiveAveragePooling2D", "DepthwiseConv2D", "GroupConv2D"]
