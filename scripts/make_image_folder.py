#!/usr/bin/env python
"""Thin wrapper over :func:`kerasnets.data.export.main`; ``--help`` lists the options.

Example (the folder of docs/benchmarks.md's folder-pipeline section):
``python scripts/make_image_folder.py /tmp/fmnist-jpeg --count 10000 --min-size 224 --max-size 500``
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.data.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
