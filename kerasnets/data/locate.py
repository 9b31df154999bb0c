"""Where a data set's files are looked for, the error when they are nowhere, and download.

Search order: ``$KERASNETS_DATA`` (``os.pathsep``-separated), the Keras cache
(``$KERAS_HOME/datasets`` or ``~/.keras/datasets``), then the spec's system directories
(where distributions install data sets). An explicit ``data_dir`` (``--data-dir``) is
the only place looked: a missing or incomplete one is an error naming what is missing,
never a silent fall-back to another copy (:func:`explicit_dir_error`). What a folder must hold is
the business of the spec's file format (its ``find_in``); this module only walks the
places. Keras is imported only inside :func:`download`, as a last resort.
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasnets.data.errors import DatasetNotFoundError

__all__ = ["download", "explicit_dir_error", "keras_cache_dir", "locate", "not_found_error"]


def keras_cache_dir() -> Path:
    """Keras' download cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _search_bases(spec, data_dir) -> list[tuple[str, Path | None]]:
    """The base directories in search order, as ``(label, path or None if unset)``;
    only ``data_dir`` when it is given."""
    if data_dir:
        return [("data_dir argument", Path(data_dir).expanduser())]
    bases = [("data_dir argument", None)]
    env = os.environ.get("KERASNETS_DATA")
    env_dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p] if env else []
    bases += [("$KERASNETS_DATA", p) for p in env_dirs] or [("$KERASNETS_DATA", None)]
    bases.append(("Keras cache", keras_cache_dir()))
    bases += [("system data set package", Path(p)) for p in spec.system_dirs]
    return bases


def _probe(spec, base: Path, notes: list[str]) -> Path | None:
    if base.is_file():
        return spec.format.find_file(spec, base)
    if not base.is_dir():
        return None
    return spec.format.find_in(spec, base, notes)


def _state(base: Path) -> str:
    if base.is_dir():
        return ""
    return "  [not a usable file]" if base.exists() else "  [does not exist]"


def locate(spec, data_dir=None) -> tuple[Path | None, list[str]]:
    """Search the places of the search order for ``spec``'s files (no download).

    Returns:
        ``(the folder or file to read, or None; one report line per place looked)``.
    """
    looked, notes = [], []
    for label, base in _search_bases(spec, data_dir):
        if base is None:
            looked.append(f"{label}: not set")
            continue
        found = _probe(spec, base, notes)
        if found:
            return found, looked
        looked.append(f"{label}: {base}  (and {spec.format.looked_in(spec)}){_state(base)}")
    return None, looked + [f"note: {n}" for n in notes]


def explicit_dir_error(spec, data_dir, notes: list[str]) -> DatasetNotFoundError:
    """One line: the explicit ``data_dir`` does not hold ``spec``'s files, and why."""
    base = Path(data_dir).expanduser()
    if not base.exists():
        why = "it does not exist"
    elif not base.is_dir():
        why = "it is a file, not a folder or archive of the data set"
    elif notes:
        why = "; ".join(notes)
    else:
        wanted = spec.format.looked_in(spec)
        why = f"it holds neither the data set's files nor {wanted}" if wanted else \
            "it holds none of the data set's files"
    how = "; ".join(spec.how_to_get)
    return DatasetNotFoundError(
        f"Could not find the {spec.name} data set. Looked in: --data-dir {base} only (given "
        f"explicitly, it is the only place looked): {why}. Fix it, or leave --data-dir out "
        f"to search $KERASNETS_DATA, the Keras cache and the system data sets. To get it: "
        f"{how}")


def not_found_error(spec, looked: list[str], download_note: str) -> DatasetNotFoundError:
    """Build the one readable error listing every place looked and how to get the data."""
    lines = [f"Could not find the {spec.name} data set. Looked in:"]
    lines += [f"  {i}. {line}" for i, line in enumerate(looked, 1)]
    lines.append(f"  {len(looked) + 1}. download: {download_note}")
    lines.append("To get it:")
    lines += [f"  {how}" for how in spec.how_to_get]
    return DatasetNotFoundError("\n".join(lines))


def download(spec) -> Path:
    """Fetch ``spec.files`` into the Keras cache with ``keras.utils.get_file``, each
    checked against its sha256.

    Returns:
        The file, or the folder holding them when the data set has several.

    Raises whatever ``get_file`` raises (no network, bad hash, ...).
    """
    # Lazy import: keras pulls in its backend, which reading files must never do eagerly.
    from keras.utils import get_file

    paths = [Path(get_file(f.name, origin=f.url, file_hash=f.sha256,
                           cache_subdir=spec.cache_subdir))
             for f in spec.files]
    return paths[0] if len(paths) == 1 else paths[0].parent
