"""One error hierarchy that maps to a Kubernetes metav1 Status.

Storage raises storage errors (storage/interface.py); the API layer translates them into these,
and the HTTP layer renders them with `to_status()`. Reasons and codes follow
k8s.io/apimachinery/pkg/api/errors.
"""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """An error that is answered to the client as a metav1 Status."""

    code: int = 500
    reason: str = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        if self.retry_after is not None:
            status.setdefault("details", {})["retryAfterSeconds"] = self.retry_after
        return status


def _details(group: str, kind: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"

    @classmethod
    def for_resource(cls, group: str, resource: str, name: str, message: str) -> Forbidden:
        res = _qualified(group, resource)
        what = f'{res} "{name}"' if name else res
        return cls(f"{what} is forbidden: {message}", details=_details(group, resource, name))


class NotFound(StatusError):
    code = 404
    reason = "NotFound"

    @classmethod
    def for_resource(cls, group: str, resource: str, name: str) -> NotFound:
        return cls(
            f'{_qualified(group, resource)} "{name}" not found', details=_details(group, resource, name)
        )


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def for_resource(cls, group: str, resource: str, name: str) -> AlreadyExists:
        return cls(
            f'{_qualified(group, resource)} "{name}" already exists',
            details=_details(group, resource, name),
        )


class Conflict(StatusError):
    code = 409
    reason = "Conflict"

    @classmethod
    def for_resource(cls, group: str, resource: str, name: str, message: str) -> Conflict:
        return cls(
            f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {message}',
            details=_details(group, resource, name),
        )


class Gone(StatusError):
    code = 410
    reason = "Expired"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(StatusError):
    code = 415
    reason = "UnsupportedMediaType"


class FieldError:
    """One bad field, as metav1.StatusCause (type FieldValueInvalid etc.)."""

    __slots__ = ("field", "kind", "message", "value")

    def __init__(self, field: str, message: str, *, kind: str = "FieldValueInvalid", value: Any = None):
        self.field = field
        self.message = message
        self.kind = kind
        self.value = value

    def __repr__(self) -> str:
        return f"FieldError({self.field!r}, {self.message!r})"

    def render(self) -> str:
        """The text kube-apiserver puts in the Status message, e.g. `metadata.name: Required value`."""
        if self.kind == "FieldValueRequired":
            text = "Required value"
            if self.message:
                text += f": {self.message}"
        elif self.kind == "FieldValueNotSupported":
            text = f"Unsupported value: {_quote(self.value)}" + (f": {self.message}" if self.message else "")
        elif self.kind == "FieldValueNotFound":
            text = f"Not found: {_quote(self.value)}"
        elif self.kind in ("FieldValueInvalid", "FieldValueTypeInvalid"):
            text = f"Invalid value: {_quote(self.value)}: {self.message}" if self.value is not None else (
                f"Invalid value: {self.message}"
            )
        elif self.kind == "FieldValueDuplicate":
            text = f"Duplicate value: {_quote(self.value)}"
        elif self.kind == "FieldValueForbidden":
            text = f"Forbidden: {self.message}"
        elif self.kind == "FieldValueTooLong":
            text = f"Too long: {self.message}"
        else:
            text = self.message
        return f"{self.field}: {text}"

    def cause(self) -> dict[str, Any]:
        return {"reason": self.kind, "message": self.render().split(": ", 1)[1], "field": self.field}


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class Invalid(StatusError):
    code = 422
    reason = "Invalid"

    def __init__(self, group: str, kind: str, name: str, errors: list[FieldError]) -> None:
        if len(errors) == 1:
            body = errors[0].render()
        else:
            body = "[" + ", ".join(e.render() for e in errors) + "]"
        message = f'{kind}.{group} "{name}" is invalid: {body}' if group else f'{kind} "{name}" is invalid: {body}'
        details = _details(group, kind, name)
        details["causes"] = [e.cause() for e in errors]
        super().__init__(message, details=details)
        self.errors = errors


class TooManyRequests(StatusError):
    code = 429
    reason = "TooManyRequests"


class InternalError(StatusError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"


class Timeout(StatusError):
    code = 504
    reason = "Timeout"
