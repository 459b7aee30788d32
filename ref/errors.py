"""Errors a user can act on (docs/model.md §2 lists what the model raises them for). The CLI
prints any `SRNNError` as one line, never a traceback."""


class SRNNError(Exception):
    """Base class: a problem with the user's input, configuration or files."""


class ConfigError(SRNNError, ValueError):
    """An unknown option or an impossible setting."""


class InputError(SRNNError, ValueError):
    """Arrays handed to the model have the wrong shape, values or mask."""


class DataError(SRNNError):
    """A data file is missing, cannot be fetched, or is not what it should be."""


class ParamsError(DataError, InputError):
    """A parameter mapping (in memory or read from a checkpoint) does not fit its Config."""


class DivergedError(SRNNError):
    """Training produced a NaN or infinite ELBO."""
