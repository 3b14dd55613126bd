"""Exceptions shared by the numerics core and its users."""


class TernaryError(ValueError):
    """Bad input to the numerics core. The message names the argument and what is wrong."""
