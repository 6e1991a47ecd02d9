"""Errors that the CLI turns into one clear line instead of a traceback."""


class ZooError(Exception):
    """A user-facing error: bad input, a missing file or column, a wrong flag."""
