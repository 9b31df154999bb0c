"""AlexNet, as torchvision defines it (the "one weird trick" single-GPU variant).

Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural
Networks" (2012). torchvision's channels (64-192-384-256-256) follow
Krizhevsky's 2014 "One weird trick" paper; the d2l chapter's version (96-256-384-
384-256, one input channel) is the 2012 one. An adaptive average pool to 6x6
makes the classifier independent of the input size.
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import sequential_paths
from kerasnets.registry import Paper, Reduced, TorchvisionNames, Weights, register

ALEXNET = Paper("One weird trick for parallelizing convolutional neural networks",
                "https://arxiv.org/abs/1404.5997")

# (filters, kernel, stride, padding, max-pool after) per torchvision's features.
FEATURES = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
            (256, 3, 1, 1, False), (256, 3, 1, 1, True))


def build_alexnet(*, input_shape, num_classes, include_top, pooling, name, dropout_rate=0.5,
                  fc_units=4096):
    """AlexNet.

    Args:
        dropout_rate: before each of the first two dense layers.
        fc_units: width of the two hidden dense layers (4096 in the paper).
    """
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for i, (filters, kernel, stride, padding, pool) in enumerate(FEATURES, start=1):
        x = B.conv2d(x, filters, kernel, stride=stride, padding=padding, use_bias=True,
                     name=f"conv{i}")
        x = B.activation(x, "relu", name=f"relu{i}")
        if pool:
            x = B.max_pool(x, 3, 2, name=f"pool{i}")
    if include_top:
        x = B.adaptive_avg_pool(x, 6, name="avgpool")
        x = keras.layers.Flatten(name="flatten")(x)
        for fc in ("fc6", "fc7"):
            x = keras.layers.Dropout(dropout_rate, name=f"{fc}_dropout")(x)
            x = B.dense(x, fc_units, name=fc)
            x = B.activation(x, "relu", name=f"{fc}_relu")
        x = B.dense(x, num_classes, name="fc8")
    elif pooling:
        x = B.global_pool(x, pooling, name="global_pool")
    return keras.Model(inputs, x, name=name)


def feature_levels(model, args):
    """The ReLU before each max-pool, as for VGG (conv1 has stride 4)."""
    pooled = [i for i, (*_, pool) in enumerate(FEATURES, start=1) if pool]
    return [(f"relu{i}", 4 * 2**level) for level, i in enumerate(pooled)]


register("alexnet", build_alexnet, paper=ALEXNET, params=61_100_840, gmacs=0.714,
         min_input_size=63, torchvision=TorchvisionNames(paths=sequential_paths),
         features=feature_levels,
         weights=Weights("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                         top1=56.522),
         recipes={"d2l": dict(lr=0.01, batch_size=128, image_size=224),
                  "modern": dict(lr=0.02)},
         reduced=Reduced(options={"fc_units": 64}))  # the 4096-wide head is 54M weights
