"""One module per family; importing this package registers every model."""

from kerasnets.models import (  # noqa: F401
    alexnet, densenet, googlenet, lenet, mobilenet, nin, resnet, vgg)
