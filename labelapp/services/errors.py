"""Errors the services raise; each carries the HTTP status the web layers answer with."""


class ServiceError(Exception):
    """A request the domain refuses; nothing was changed."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(ServiceError):
    """Well-formed but invalid: a ranking that is not a permutation, a quality of 8, ..."""

    status = 422


class NotFound(ServiceError):
    """No such object for this user (someone else's assignment looks the same as none)."""

    status = 404


class Conflict(ServiceError):
    """The object is in a state that forbids this: already submitted otherwise, skipped, ..."""

    status = 409


class Expired(ServiceError):
    """The reservation ran out; the work may have been given to someone else."""

    status = 410


class InvalidTransition(Conflict):
    """A round state change that the state machine does not allow."""
