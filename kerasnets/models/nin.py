"""Network in Network, as the d2l chapter on classic CNNs writes it.

Lin et al., "Network In Network" (2013). Each NiN block is one spatial
convolution followed by two 1x1 convolutions (a per-pixel MLP), all with ReLU.
Blocks of 11x11/4, 5x5 and 3x3 alternate with 3x3/2 max-pools; dropout; a final
NiN block with ``num_classes`` channels and global average pooling replace the
dense classifier.
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.layers.initializers import glorot_uniform
from kerasnets.registry import Paper, register

NIN = Paper("Network In Network", "https://arxiv.org/abs/1312.4400")

# (filters, kernel, stride, padding) of the three feature blocks.
FEATURES = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1))


def nin_block(x, filters, kernel_size, *, stride, padding, name):
    init = glorot_uniform()  # d2l's train_ch6 uses Xavier-uniform everywhere
    x = B.conv2d(x, filters, kernel_size, stride=stride, padding=padding, use_bias=True,
                 kernel_initializer=init, name=f"{name}_conv1")
    x = B.activation(x, "relu", name=f"{name}_relu1")
    for i in (2, 3):
        x = B.conv2d(x, filters, 1, use_bias=True, kernel_initializer=init,
                     name=f"{name}_conv{i}")
        x = B.activation(x, "relu", name=f"{name}_relu{i}")
    return x


def build_nin(*, input_shape, num_classes, include_top, pooling, name, dropout_rate=0.5):
    """NiN. ``dropout_rate``: before the classifying NiN block (d2l: 0.5)."""
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for i, (filters, kernel, stride, padding) in enumerate(FEATURES, start=1):
        x = nin_block(x, filters, kernel, stride=stride, padding=padding, name=f"block{i}")
        x = B.max_pool(x, 3, 2, name=f"pool{i}")
    if include_top:
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = nin_block(x, num_classes, 3, stride=1, padding=1, name="block4")
        x = B.global_pool(x, "avg", name="avgpool")
    elif pooling:
        x = B.global_pool(x, pooling, name="global_pool")
    return keras.Model(inputs, x, name=name)


def feature_levels(model, args):
    """Each feature block's output, before its max-pool (block1's conv has stride 4)."""
    return [(f"block{i}_relu3", 4 * 2**(i - 1)) for i in range(1, len(FEATURES) + 1)]


register("nin", build_nin, paper=NIN, params=7_439_608, gmacs=0.966, min_input_size=67,
         features=feature_levels,
         recipes={"d2l": dict(lr=0.1, batch_size=128, image_size=224)})
