"""Errors that the CLI turns into one clear line and exit code 2."""


class JaxvisError(Exception):
    """A user-facing error: bad input, a wrong file, an unknown layer. The message is one line."""


class WeightsError(JaxvisError, ValueError):
    """A weights file that cannot be used (not HDF5, truncated, wrong layout or shapes) or cannot be had."""
