"""Errors that cosim reports to a user as one line, without a traceback."""


class CosimError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class InputError(CosimError, ValueError):
    """Bad user input: wrong shapes, values, sizes, unknown names."""


class NgspiceError(CosimError, RuntimeError):
    """ngspice is missing, failed, or did not converge. The message keeps ngspice's own words."""


class TableError(CosimError, ValueError):
    """A lookup table is corrupt, truncated, or does not match what was asked."""


class DataError(CosimError, ValueError):
    """A data set or checkpoint cannot be read or does not match the model."""


class StorageError(CosimError, OSError):
    """A file or folder cannot be written (read-only, full, not a folder): the message names the path,
    the cause and what was kept."""


class SolverError(CosimError, RuntimeError):
    """The exact array solver (cosim.circuit.solver) did not converge for some columns; the message names them."""
