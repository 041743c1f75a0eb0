"""Exceptions with messages meant for users: the CLI prints them as one line."""


class UcatError(Exception):
    """Base class: the CLI reports these as ``error: <message>`` and exits 2."""


class ConfigError(UcatError):
    """A parameter is unknown, missing or out of range.  The message names the key."""


class DataError(UcatError):
    """A data set is missing, incomplete, corrupt or inconsistent.  The message names the file."""


class TrainingError(UcatError):
    """Fine-tuning cannot go on (e.g. the loss is no longer finite).  The message names the step."""


class MetricsError(UcatError):
    """A metrics file the report reads holds a value of the wrong type or range.  The message names the file."""


class CheckpointError(UcatError):
    """A checkpoint is missing, truncated, or does not match the requested model."""


def unknown_choice(key: str, value, allowed) -> ConfigError:
    """The one-line error for a value outside an allowed set."""
    return ConfigError(f"{key}: unknown value {value!r}; allowed: {', '.join(map(str, sorted(allowed)))}")
