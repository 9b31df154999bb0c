#!/usr/bin/env python
"""Train a kerasnets model: ``KERAS_BACKEND=jax python scripts/train.py resnet34``.

A thin wrapper over :func:`kerasnets.training.cli.main`; ``--help`` lists every option.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
