"""What a run keeps on disk, always written atomically (temp file, then rename), with
the mode the umask gives.

``saved_models/<model>-<dataset>-<timestamp>/``::

    config.json     every setting, the backend, package versions, the machine
    model.keras     the final model
    best.keras      the best epoch so far (by validation accuracy)
    backup/         the last completed epoch or step, with the optimizer (for --resume);
                    removed once metrics.json says the run finished
    train.lock      while a process trains the run (holds its pid; flock)
    history.csv     per-epoch metrics
    metrics.json    test top-1/top-5, loss, images/s, wall time, status
    curves.png      loss and accuracy per epoch
    logs/           TensorBoard
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import threading
from importlib import metadata
from pathlib import Path

import keras

from kerasnets.training.errors import OutputError, storage_problem


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename onto ``path``: never a half-written file.

    The file gets the mode a plain ``open`` would give it (``0o666`` less the umask;
    ``mkstemp`` alone makes it ``0o600``). A failure the storage causes (disk full,
    read-only, no permission) raises :class:`~kerasnets.training.errors.OutputError`
    naming ``path``; the file already at ``path``, if any, is left as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes) or ".tmp"  # keep ".keras" / ".weights.h5" endings
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except Exception as error:
        reason = storage_problem(error, path.parent if path.parent.exists() else None)
        if reason:
            raise OutputError(f"Cannot write {path}: {reason}.", path, reason) from error
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_model(model, path):
    atomic_write(path, lambda tmp: model.save(tmp))


def write_history_csv(path, rows):
    """``rows``: list of dicts (one per epoch), written as one CSV."""
    if not rows:
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_history_csv(path):
    if not Path(path).exists():
        return []
    with open(path) as f:
        return [{k: (float(v) if k != "epoch" else int(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]


def plot_curves(path, rows, title):
    """Loss and accuracy per epoch, train and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + key) for row in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def package_versions():
    versions = {"python": platform.python_version()}
    for name in ("kerasnets", "keras", "tensorflow", "jax", "jaxlib", "torch", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine_description():
    devices = []
    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without device listing: not worth failing a run
        pass
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), **cpu_model(), "cpu_count": os.cpu_count(),
            "memory_gib": memory, "devices": [str(d) for d in devices],
            "hostname": platform.node()}


# The vector extensions that decide which convolution kernels oneDNN, XLA and Eigen use.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_model(cpuinfo="/proc/cpuinfo") -> dict:
    """``{"cpu_model": ..., "cpu_features": [...]}`` from Linux's ``cpuinfo`` ({} where
    there is none). Timings are only comparable on the same CPU: the same 2-core VM
    has landed on hosts with and without AVX-512, and TensorFlow trained ResNet-18
    2.7-4.4x slower on the one without (68.7 against 15.6-25.8 images/s,
    docs/benchmarks.md, 2026-11-24)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return {"cpu_model": model, "cpu_features": [f for f in CPU_FEATURES if f in flags]}
