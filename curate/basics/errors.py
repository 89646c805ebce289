"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class CurateError(Exception):
    """A user-facing error: bad config, missing file, wrong option."""
