"""One error hierarchy for the whole tool.

Every error a user can cause is a `BushuError` carrying the HTTP status it maps to, so the
CLI prints its message and exits non-zero, and the server renders `{"error": ...}` with that
status — even when the error crossed a thread into a worker.
"""

from __future__ import annotations


class BushuError(Exception):
    """An error whose message is meant for the user; `status` is its HTTP status."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(BushuError):
    """The caller sent tensors or arguments that do not fit the model."""

    status = 400


class NotFound(BushuError):
    """A model, version, variant or file that does not exist."""

    status = 404


class PackageError(BushuError):
    """A package directory or manifest that is malformed or inconsistent."""

    status = 422


class IntegrityError(PackageError):
    """A packaged file whose bytes no longer match the manifest's hash."""

    def __init__(self, message: str, *, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class ExportError(BushuError):
    """The exported model does not compute what the source model computed."""

    status = 422


class Overloaded(BushuError):
    """503 with a Retry-After: a full queue, a cache with no room, a model shutting down — any
    part of the server that refuses work for now rather than for good."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
