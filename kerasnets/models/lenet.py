"""LeNet-5 as the d2l chapter on classic CNNs writes it.

LeCun et al., "Gradient-Based Learning Applied to Document Recognition" (1998).
Two 5x5 convolutions (6 and 16 channels, the first padded by 2 so 28x28 MNIST
images keep the paper's 32x32 geometry), 2x2 pooling, dense 120-84-classes.
d2l drops the final Gaussian layer and uses sigmoid and average pooling.

``norm="batch"`` is d2l's BN-LeNet (the batch-normalization chapter): a BN after
every convolution and every dense layer but the output, before the activation;
the layers keep their biases, as d2l's do. d2l's BN-LeNet code also drops the
first convolution's padding (a 4x4 map before flattening, 44,878 parameters);
here the norm option changes the norm only, so conv1 keeps LeNet's padding of 2
(5x5, 62,158 parameters for 10 classes).
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.layers.pooling import MaxPooling2D
from kerasnets.layers.initializers import glorot_uniform
from kerasnets.registry import Paper, register

LENET = Paper("Gradient-Based Learning Applied to Document Recognition",
              "http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf")


def build_lenet(*, input_shape, num_classes, include_top, pooling, name,
                activation="sigmoid", pool="avg", dropout_rate=0.0, norm="none"):
    """LeNet-5.

    Args:
        activation: after every conv and hidden dense layer ("sigmoid" as in d2l;
            "relu" trains faster).
        pool: "avg" (d2l) or "max" subsampling, 2x2 stride 2.
        dropout_rate: dropout before each dense layer (d2l: none).
        norm: "none" (LeNet), "batch" (d2l's BN-LeNet), "group", "layer" or
            "instance" after every conv and hidden dense layer, named ``{layer}_norm``
            (see :func:`kerasnets.layers.blocks.norm`; on the dense layers "instance"
            means "layer").
    """
    if pool not in ("avg", "max"):
        raise ValueError(f"lenet5: pool must be 'avg' or 'max', not {pool!r}.")
    pool_layer = keras.layers.AveragePooling2D if pool == "avg" else MaxPooling2D
    init = glorot_uniform()  # d2l's train_ch6 uses Xavier-uniform everywhere
    inputs = keras.Input(input_shape, name="input")
    x = B.conv2d(inputs, 6, 5, padding=2, use_bias=True, kernel_initializer=init, name="conv1")
    x = B.norm(x, norm, name="conv1_norm")
    x = B.activation(x, activation, name="act1")
    x = pool_layer(2, strides=2, name="pool1")(x)
    x = B.conv2d(x, 16, 5, padding=0, use_bias=True, kernel_initializer=init, name="conv2")
    x = B.norm(x, norm, name="conv2_norm")
    x = B.activation(x, activation, name="act2")
    x = pool_layer(2, strides=2, name="pool2")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate((120, 84), start=1):
            if dropout_rate:
                x = keras.layers.Dropout(dropout_rate, name=f"fc{i}_dropout")(x)
            x = B.dense(x, units, name=f"fc{i}")
            x = B.norm(x, norm, name=f"fc{i}_norm")
            x = B.activation(x, activation, name=f"fc{i}_act")
        x = B.dense(x, num_classes, name="fc3")
    elif pooling:
        x = B.global_pool(x, pooling, name="global_pool")
    return keras.Model(inputs, x, name=name)


register("lenet5", build_lenet, paper=LENET, params=61_706, gmacs=0.000417,
         input_shape=(28, 28, 1), num_classes=10, min_input_size=12,
         features="LeNet-5 has no multi-scale stages to take features from: two small "
                  "convolutions (6 and 16 channels) and its dense layers. Use "
                  "include_top=False for its last feature map.",
         recipes={"d2l": dict(lr=0.9, batch_size=256),
                  "modern": dict(lr=0.05, epochs=20, weight_decay=1e-4, label_smoothing=0.0,
                                 model_options={"activation": "relu", "pool": "max"})})
