"""The HTTP status of each error, for the API's problem details and the pages alike.

========================  ======
error                     status
========================  ======
AuthenticationError       401
PermissionDeniedError     403
NotFoundError             404
ConflictError             409
ValidationError           422
TooManyRequestsError      429
ConfigurationError        500
other ConsortiaError      400
========================  ======
"""

from __future__ import annotations

from collections.abc import Sequence

from consortia.exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConsortiaError,
    NodeUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    TooManyRequestsError,
    ValidationError,
)

__all__ = ["status_for"]

_STATUS: Sequence[tuple[type[ConsortiaError], int]] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ValidationError, 422),
    (TooManyRequestsError, 429),
    (ConfigurationError, 500),
    (NodeUnavailableError, 503),
)


def status_for(error: ConsortiaError) -> int:
    """The HTTP status an error maps to (400 for errors without a more precise one).

    >>> status_for(NotFoundError("subject SG01-001 not found")), status_for(ConsortiaError())
    (404, 400)
    """
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400
