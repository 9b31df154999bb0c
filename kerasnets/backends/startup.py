"""Backend settings read once, when a backend starts: environment variables that
``import kerasnets`` sets before it imports Keras (and so TensorFlow), and before JAX
starts its CPU backend.

Each is a default: a value the user exported always wins, and nothing is set once the
backend that reads it has started (too late to take effect: a process that imports
``tensorflow``, or ``keras`` with the TensorFlow backend, before ``kerasnets`` keeps
TensorFlow's own default; one that ran a JAX computation first keeps XLA's flags).

=========================  ===========================  ==================================
variable                   value                        why
=========================  ===========================  ==================================
``TF_CPP_MIN_LOG_LEVEL``   ``2``                        TensorFlow's C++ INFO lines drown
                                                        progress bars
``TF_ENABLE_ONEDNN_OPTS``  ``1``                        x86 CPUs only: TensorFlow turns its
                                                        oneDNN kernels on by itself only on
                                                        CPUs with AVX-512; on an AMD EPYC
                                                        without it they train ResNet-18
                                                        faster (docs/benchmarks.md)
``XLA_FLAGS``              ``--xla_cpu_experimental_    JAX, x86, jaxlib 0.10 only: XLA:CPU
                           ynn_fusion_type=             runs convolutions as YNNPACK
                           -individual_convolution``    fusions by default, 1.09-2.1x
                           added to the user's flags    slower forward + backward than its
                                                        own (Eigen) convolution on every
                                                        layer of the zoo measured
                                                        (benchmarks/xla_convolutions.py)
=========================  ===========================  ==================================

oneDNN's kernels sum in another order than TensorFlow's Eigen ones ("slightly
different numerical results", TensorFlow's start-up message), and XLA's own convolution
in another order than YNNPACK's: the parity suite (``scripts/parity.py``) and the
torchvision logits tests pass with them at the same tolerances.

One setting cannot be made by ``import kerasnets``: glibc reads ``GLIBC_TUNABLES`` only when
a process starts. kerasnets' commands (``train.py``/``kerasnets-train`` and the benchmark's
workers) restart themselves once with ``glibc.malloc.hugetlb=1`` added to it
(:func:`restart_with_huge_pages`), on JAX on Linux with glibc 2.35 or later where the
kernel's transparent huge pages are on ("always" or "madvise"). XLA:CPU takes every
step's buffers afresh from ``malloc``, which maps them from the kernel page by page: the
trainer's ResNet-50 page-faulted 2.97 GB a step, and each 4 KiB page is faulted in and
zeroed again every step (sys time 1.1 s of a 3.5 s step). With the tunable ``malloc``
asks for 2 MiB pages: 10,000 faults a step instead of 725,000, and JAX trains 1.08-1.52x
faster (docs/benchmarks.md; ``python -m kerasnets.benchmarks.huge_pages MODEL`` measures
it). TensorFlow keeps its own allocator (under 6 MB of faults a step); torch was no faster
with it, so neither restarts. A ``glibc.malloc.hugetlb`` value
of the user's own wins (``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` keeps glibc's default).

``XLA_FLAGS`` holds many flags: kerasnets adds its one flag to the user's unless they
name that flag themselves (``--xla_cpu_experimental_ynn_fusion_type=+individual_convolution``
keeps JAX's own default). The flag is XLA:CPU's: a GPU's convolutions are untouched. XLA
stops a process on a flag it does not know, so it is added only for the jaxlib releases
it was measured with (``YNN_FLAG_JAXLIB_VERSIONS``).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# XLA's own convolution instead of YNNPACK's (kerasnets' default) / JAX's own default,
# spelled out (the benchmark runs keras.applications with it, as its users get it).
XLA_OWN_CONVOLUTIONS = YNN_FUSION_FLAG + "=-individual_convolution"
YNN_CONVOLUTIONS = YNN_FUSION_FLAG + "=+individual_convolution"
YNN_FLAG_JAXLIB_VERSIONS = ("0.10.",)


def _x86(machine: str | None) -> bool:
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def _jaxlib_version() -> str | None:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def defaults(machine: str | None = None, jaxlib: str | None = "installed",
             backend: str | None = None) -> dict:
    """The variables kerasnets sets on this ``machine`` (``platform.machine()``) with this
    ``jaxlib`` version (default: the installed one; None: not installed) for this Keras
    ``backend`` (None: not known yet, before Keras is imported). ``XLA_FLAGS`` is the flag
    kerasnets adds to the user's, for JAX only: TensorFlow's own XLA reads ``XLA_FLAGS``
    too, and may not know the flag."""
    jaxlib = _jaxlib_version() if jaxlib == "installed" else jaxlib
    values = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if _x86(machine):
        values["TF_ENABLE_ONEDNN_OPTS"] = "1"
        if backend == "jax" and jaxlib and jaxlib.startswith(YNN_FLAG_JAXLIB_VERSIONS):
            values["XLA_FLAGS"] = XLA_OWN_CONVOLUTIONS
    return values


def _jax_started(modules) -> bool:
    """Whether JAX has started a backend: it reads ``XLA_FLAGS`` then, not at import."""
    bridge = modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def apply(environ=None, modules=None, machine: str | None = None,
          jaxlib: str | None = "installed", backend: str | None = None) -> dict:
    """Set each of :func:`defaults` that ``environ`` lacks, unless the backend that reads
    it has started (TensorFlow imported, JAX's backend running); returns what was set
    (for ``XLA_FLAGS``, the whole new value). ``import kerasnets`` calls it before it
    imports Keras (TensorFlow's variables) and again with Keras' ``backend`` (JAX's)."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    chosen = {}
    for name, value in defaults(machine, jaxlib, backend).items():
        if name == "XLA_FLAGS":
            flags = environ.get(name, "")
            if YNN_FUSION_FLAG in flags or _jax_started(modules):
                continue
            value = f"{flags} {value}".strip()
        elif name in environ or "tensorflow" in modules:
            continue
        chosen[name] = value
    environ.update(chosen)
    return chosen


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
HUGE_PAGES_MIN_GLIBC = (2, 35)  # the release that added the tunable


def _configured_backend(environ) -> str:
    """The Keras backend a process will use, read as Keras reads it (``KERAS_BACKEND``,
    else ``keras.json`` under ``KERAS_HOME`` or ``~/.keras``), without importing Keras."""
    if environ.get("KERAS_BACKEND"):
        return environ["KERAS_BACKEND"]
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        import json

        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _transparent_huge_pages() -> str | None:
    """The kernel's transparent huge page mode ("always", "madvise", "never"), or None."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.find("[") + 1:text.find("]")] if "[" in text else None


def huge_pages_tunables(environ=None, libc=None, thp="read") -> str | None:
    """The ``GLIBC_TUNABLES`` value a kerasnets command restarts with: the user's with
    ``HUGE_PAGES_TUNABLE`` added; None where nothing is to be added (not the JAX backend,
    not glibc >= 2.35, transparent huge pages off or unknown, or the user's value names
    ``glibc.malloc.hugetlb``). ``libc``: ``platform.libc_ver()``'s answer; ``thp``: the
    kernel's mode (default: read from ``/sys``)."""
    environ = os.environ if environ is None else environ
    if _configured_backend(environ) != "jax":
        return None
    name, version = platform.libc_ver() if libc is None else libc
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if name != "glibc" or release < HUGE_PAGES_MIN_GLIBC:
        return None
    if (_transparent_huge_pages() if thp == "read" else thp) not in ("always", "madvise"):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    return f"{current}:{HUGE_PAGES_TUNABLE}" if current else HUGE_PAGES_TUNABLE


def restart_with_huge_pages(execve=os.execve) -> None:
    """Run this process's command again, in place, with :func:`huge_pages_tunables` in
    its environment, where that adds something; return otherwise (and in the restarted
    process, whose ``GLIBC_TUNABLES`` then names the tunable). For kerasnets' commands
    only, first thing in their ``main``: never from ``import kerasnets``."""
    value = huge_pages_tunables()
    if value is None or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
           {**os.environ, "GLIBC_TUNABLES": value})
