"""Domain errors. One place (``chalicelib.http``) maps them to HTTP responses."""

from __future__ import annotations


class StagecoachError(Exception):
    """Base class of every error a user can be shown."""

    code = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(StagecoachError):
    """Input is malformed or a field is invalid; ``field`` names it when known."""

    code = "ValidationError"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class BadRequestError(StagecoachError):
    """The request cannot be read at all (bad JSON, unparseable payload)."""

    code = "BadRequest"


class NotFoundError(StagecoachError):
    """A stack, stage or release does not exist."""

    code = "NotFound"


class ConflictError(StagecoachError):
    """The write lost a race or contradicts the current state (stale version, duplicate)."""

    code = "Conflict"


class UnauthorizedError(StagecoachError):
    """A webhook signature or token is missing or wrong."""

    code = "Unauthorized"


class PayloadTooLargeError(StagecoachError):
    """The body exceeds the size limit of the route."""

    code = "PayloadTooLarge"


class UnsupportedMediaTypeError(StagecoachError):
    """The body is not of a content type the route accepts."""

    code = "UnsupportedMediaType"


class UnavailableError(StagecoachError):
    """A service Stagecoach depends on failed for now; nothing was lost and the request can be retried."""

    code = "Unavailable"
