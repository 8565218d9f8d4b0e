"""One exception hierarchy, built from the API's problem details (RFC 9457).

Every failure raises; no method returns ``None`` to mean it failed.
"""

from __future__ import annotations

from typing import Any

INSUFFICIENT_CREDITS = "urn:p2pc:problem:insufficient-credits"
EVENTS_GONE = "urn:p2pc:problem:events-gone"
EVENTS_EPOCH = "urn:p2pc:problem:events-epoch"


class P2pcError(Exception):
    """Anything that went wrong talking to a p2pc node.

    ``status`` is the HTTP status when the node answered (``None`` when it
    could not be reached), ``kind`` the problem's ``type`` URI and
    ``detail`` what the node said to do about it.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        kind: str = "about:blank",
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.kind = kind
        self.problem: dict[str, Any] = problem or {}

    def __str__(self) -> str:
        if self.status is None:
            return self.detail
        return f"{self.detail} (HTTP {self.status})"


class ConnectionError(P2pcError):  # noqa: A001 - the SDK's own, a P2pcError
    """The node could not be reached: not running, wrong URL, socket gone."""


class AuthError(P2pcError):
    """401: no token, or the wrong one."""


class BadRequest(P2pcError):
    """400, 413, 415, 416: the request itself is wrong."""


class NotFound(P2pcError):
    """404: the job, blob, bundle, key or peer does not exist here."""


class Conflict(P2pcError):
    """409: the job is in the wrong state for that (cancel a finished job)."""


class InsufficientCredits(P2pcError):
    """402: the account has too few credits for a transfer or a job's holds."""


class Rejected(P2pcError):
    """422: understood but cannot be done: no worker, no ledger, a budget
    that buys no fuel."""


class Unavailable(P2pcError):
    """503 or 502: the node is too busy, or a fetch from the network failed."""


class ServerError(P2pcError):
    """500: the node failed; its log says why."""


class EventsGone(P2pcError):
    """410 from the event stream: the events after ``since`` are no longer
    kept, or the node restarted (a new epoch). ``resume`` says where the
    stream stands now: ``{"epoch", "oldest", "newest"}``."""

    @property
    def restarted(self) -> bool:
        """Whether the node restarted since (rather than the client falling
        too far behind)."""
        return self.kind == EVENTS_EPOCH

    @property
    def resume(self) -> dict[str, Any]:
        r = self.problem.get("resume")
        return r if isinstance(r, dict) else {}


class StreamBroken(P2pcError):
    """The event stream was cut by the node: this client read too slowly
    and fell behind its buffer. Resume with ``since=`` the last ``seq``."""


class JobFailed(P2pcError):
    """A job ended without an answer.

    ``code`` is how it ended: the task's error code (``out_of_fuel``,
    ``trapped``, ``timeout``, ``memory_limit``, ``job_error``, ...) when a
    worker answered, or ``failed``, ``cancelled`` or ``lost``.
    """

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} ended {code}: {message}" if message else f"job {job_id} ended {code}")
        self.job_id = job_id
        self.code = code
        self.message = message


class JobTimeout(P2pcError, TimeoutError):
    """A wait for a job ran past its ``timeout``; the job may still end."""


def from_problem(status: int, body: Any, fallback: str) -> P2pcError:
    """The exception for an error answer with this status and body."""
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        detail = fallback or f"HTTP {status}"
    kind = problem.get("type")
    if not isinstance(kind, str):
        kind = "about:blank"
    cls: type[P2pcError]
    if kind == INSUFFICIENT_CREDITS or status == 402:
        cls = InsufficientCredits
    elif kind in (EVENTS_GONE, EVENTS_EPOCH) or status == 410:
        cls = EventsGone
    elif status == 401:
        cls = AuthError
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status == 422:
        cls = Rejected
    elif status in (502, 503):
        cls = Unavailable
    elif 400 <= status < 500:
        cls = BadRequest
    else:
        cls = ServerError
    return cls(detail, status=status, kind=kind, problem=problem)
