#!/usr/bin/env python
"""Run one of the seeds' questions as an experiment:
``KERAS_BACKEND=tensorflow python scripts/experiment.py degradation [--quick]``.

A thin wrapper over :func:`kerasnets.experiments.cli.main`; ``--help`` lists every option.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.experiments.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="experiment.py"))
