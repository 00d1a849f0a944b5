"""The one error tree of Consortia.

Domain and service code raise only these; entry points turn them into what their user
understands (an RFC 9457 problem response, a message next to a form field, or a
``file:line:col: path: message`` line from the CLI). No stack trace reaches a user.

::

    ConsortiaError
    ├── StudyDefinitionError        a study YAML has problems (carries every Problem at once)
    ├── ExpressionError             an expression cannot be parsed, checked or evaluated
    ├── InterchangeError            a REDCap / ODM / CSV file cannot be read (carries line numbers)
    ├── ValidationError             entered data breaks hard rules (carries every Problem)
    ├── NotFoundError               a record does not exist *or the caller may not see it*
    ├── PermissionDeniedError       the caller's role lacks the action
    ├── ConflictError               optimistic concurrency: the record changed meanwhile
    ├── AuthenticationError         unknown user, bad password, bad/expired/revoked token
    ├── TooManyRequestsError        too many attempts (sign-ins): try again after retry_after s
    ├── ConfigurationError          settings that must not be used (default secret in production)
    ├── StatisticsError             an estimator cannot be computed on the given data
    └── FederationError             protocol failures between nodes
        ├── SignatureError          bad signature, unknown key, replay or clock skew
        ├── PolicyRefusal           a node's disclosure policy refused a request (names the rule)
        └── NodeUnavailableError    a member node did not answer in time
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input, with where it is and what would be right.

    ``line`` and ``column`` are 1-based; 0 means unknown.

    >>> str(Problem("forms.ae.items.grade", "6 is outside 1–5", "study.yaml", 12, 9))
    'study.yaml:12:9: forms.ae.items.grade: 6 is outside 1–5'
    """

    path: str
    message: str
    file: str = ""
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = self.file or "<input>"
        location = f"{where}:{self.line}:{self.column}" if self.line else where
        return (
            f"{location}: {self.path}: {self.message}"
            if self.path
            else f"{location}: {self.message}"
        )


class ConsortiaError(Exception):
    """Base of every error Consortia raises on purpose."""


class _ProblemsError(ConsortiaError):
    def __init__(self, problems: list[Problem] | tuple[Problem, ...], summary: str = "") -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        text = summary or "\n".join(str(p) for p in self.problems)
        super().__init__(text)


class StudyDefinitionError(_ProblemsError):
    """A study definition has one or more problems; ``problems`` lists them all."""


class ValidationError(_ProblemsError):
    """Entered data breaks hard rules; ``problems`` lists each item path and message."""


class InterchangeError(_ProblemsError):
    """A REDCap, ODM or CSV file cannot be read or written; ``problems`` carry line numbers."""


class ExpressionError(ConsortiaError):
    """An expression cannot be parsed, checked or evaluated.

    ``column`` is 1-based within the expression source (0 when unknown).
    """

    def __init__(self, message: str, source: str = "", column: int = 0) -> None:
        self.message = message
        self.source = source
        self.column = column
        super().__init__(message)


class NotFoundError(ConsortiaError):
    """The record does not exist, or the caller may not see it (existence never leaks)."""


class PermissionDeniedError(ConsortiaError):
    """The caller's role does not allow the action."""


class ConflictError(ConsortiaError):
    """The record changed since the caller read it (stale version)."""


class AuthenticationError(ConsortiaError):
    """Unknown user, wrong password, locked account, or a bad, expired or revoked token."""


class TooManyRequestsError(ConsortiaError):
    """Too many attempts (failed sign-ins from one address or for one account, or more
    sign-ins waiting than the node takes at once): try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ConfigurationError(ConsortiaError):
    """Settings that must not be used, such as a default secret outside development."""


class StatisticsError(ConsortiaError):
    """An estimator cannot be computed on the given data."""


class FederationError(ConsortiaError):
    """A failure in the protocol between nodes."""


class SignatureError(FederationError):
    """A message's signature is bad, its key untrusted, or it is a replay or too old."""


class PolicyRefusal(FederationError):
    """A node's disclosure policy refused a request; ``rule`` names the rule."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(f"{rule}: {message}")


class NodeUnavailableError(FederationError):
    """A member node did not answer in time."""

    def __init__(self, node: str, message: str = "") -> None:
        self.node = node
        super().__init__(message or f"node {node!r} did not answer in time")
