"""Layers and blocks shared by the model families."""

from kerasnets.layers.conv import Conv2D, DepthwiseConv2D, GroupConv2D
from kerasnets.layers.normalization import BatchNormalization
from kerasnets.layers.pooling import AdaptiveAveragePooling2D, AveragePooling2D, MaxPooling2D

__all__ = ["AdaptiveAveragePooling2D", "AveragePooling2D", "BatchNormalization", "Conv2D",
           "DepthwiseConv2D", "GroupConv2D", "MaxPooling2D"]
