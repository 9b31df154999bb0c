"""The trainer's own errors: each message says what was wrong and what to do."""


class TrainingError(Exception):
    """A run could not start or could not finish; the message says why and what to do."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C / SIGTERM: the run directory holds what was trained."""


class LossDiverged(TrainingError):
    """The training loss became NaN or infinite; the run directory (``run_dir``) keeps the
    last good state, and its ``metrics.json`` status begins with ``STATUS``."""

    STATUS = "failed: loss became NaN"

    def __init__(self, message, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir


class SettingError(TrainingError, ValueError):
    """A setting has a value it cannot take (from the command line, config.json or Python)."""


class OutputError(TrainingError):
    """The run directory cannot be written: read-only, no permission, disk full.

    ``path`` is what could not be written, ``reason`` why, in words."""

    def __init__(self, message, path=None, reason=None):
        super().__init__(message)
        self.path, self.reason = path, reason

    def __str__(self):
        return str(self.args[0])


class RunLocked(TrainingError):
    """Another process is training the run directory (its ``train.lock`` is held)."""


class RunFinished(TrainingError):
    """``--resume`` of a run that finished: there is nothing left to do."""


_STORAGE_ERRNOS = {"ENOSPC": "no space left on device", "EDQUOT": "disk quota exceeded",
                   "EROFS": "read-only file system", "EACCES": "permission denied",
                   "EPERM": "operation not permitted", "EFBIG": "file too large"}


def storage_problem(error, directory=None, min_free=1 << 20):
    """Why ``error`` (or an error it was raised from) is the storage's fault, in words, or
    ``None``: an ``OSError`` whose errno says so, or any error while ``directory``'s disk
    has less than ``min_free`` bytes left (h5py reports a full disk without an errno)."""
    import errno as errnos
    import shutil

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OutputError) and error.reason:
            return error.reason
        if isinstance(error, OSError) and error.errno is not None:
            for name, words in _STORAGE_ERRNOS.items():
                if error.errno == getattr(errnos, name, None):
                    return words
        error = error.__cause__ or error.__context__
    if directory is not None:
        try:
            if shutil.disk_usage(directory).free < min_free:
                return "no space left on device"
        except OSError:
            pass
    return None
