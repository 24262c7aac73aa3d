"""Errors every layer may raise and the command line prints as one line (no imports)."""


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


__all__ = ["UserError"]
