"""Errors whose message is meant for the user, shown without a traceback."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""

    exit_code = 2


class DatasetError(UserError):
    """The dataset folder is missing, empty, or cannot be split as asked."""


class ImageDecodeError(UserError):
    """An image file is not an image, is corrupt or truncated, or cannot be converted to RGB.

    ``reason`` is the short cause without the path (for lists of skipped files).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class WeightsUnavailableError(UserError):
    """ImageNet weights for a backbone are not on this machine and cannot be fetched."""


class UnknownBackboneError(UserError):
    """A backbone name that the registry does not know."""
