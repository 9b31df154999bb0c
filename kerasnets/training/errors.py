"""The trainer's own errors: each message says what was wrong and what to do."""


class TrainingError(Exception):
    """A run could not start or could not finish; the message says why and what to do."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C / SIGTERM: the run directory holds what was trained."""


class SettingError(TrainingError, ValueError):
    """A setting has a value it cannot take (from the command line, config.json or Python)."""
