"""Backend settings read once, when a backend starts: environment variables that
``import kerasnets`` sets before it imports Keras (and so TensorFlow).

Each is a default: a value the user exported always wins, and nothing is set once
TensorFlow has been imported (too late to take effect; a process that imports
``tensorflow`` or ``keras`` with the TensorFlow backend before ``kerasnets`` keeps
TensorFlow's own default).

=========================  ============  =============================================
variable                   value         why
=========================  ============  =============================================
``TF_CPP_MIN_LOG_LEVEL``   ``2``         TensorFlow's C++ INFO lines drown progress bars
``TF_ENABLE_ONEDNN_OPTS``  ``1``         x86 CPUs only: TensorFlow turns its oneDNN
                                         kernels on by itself only on CPUs with
                                         AVX-512; on an AMD EPYC without it they train
                                         ResNet-18 faster (docs/benchmarks.md)
=========================  ============  =============================================

oneDNN's kernels sum in another order than TensorFlow's Eigen ones ("slightly
different numerical results", TensorFlow's start-up message): the parity suite
(``scripts/parity.py``) and the torchvision logits tests pass with them at the
same tolerances.
"""

from __future__ import annotations

import os
import platform
import sys


def defaults(machine: str | None = None) -> dict:
    """The variables kerasnets sets on this ``machine`` (``platform.machine()``)."""
    machine = (machine or platform.machine()).lower()
    values = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if machine in ("x86_64", "amd64"):
        values["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return values


def apply(environ=None, modules=None, machine: str | None = None) -> dict:
    """Set each of :func:`defaults` that ``environ`` lacks, unless TensorFlow is already
    in ``modules``; returns what was set."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "tensorflow" in modules:
        return {}
    chosen = {k: v for k, v in defaults(machine).items() if k not in environ}
    environ.update(chosen)
    return chosen
