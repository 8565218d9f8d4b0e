"""What the node answers, as typed, read-only records.

Each record is built from the API's JSON by ``from_json``, which takes the
fields the OpenAPI document (``docs/api/openapi.json``) names and keeps the
whole answer in ``raw`` for anything newer than this SDK.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

TERMINAL = frozenset({"done", "failed", "cancelled", "lost"})


def _build(cls: type[T], d: Any) -> T:
    if not isinstance(d, dict):
        raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in d.items() if k in names and k != "raw"}
    if "raw" in names:
        kwargs["raw"] = d
    return cls(**kwargs)


@dataclass(frozen=True)
class Blob:
    """A blob in the node's content-addressed store."""

    id: str
    len: int
    chunks: int = 0
    pinned: bool = False

    @classmethod
    def from_json(cls, d: Any) -> Blob:
        return _build(cls, d)


@dataclass(frozen=True)
class Bundle:
    """A signed bundle the node keeps: what jobs are submitted with."""

    id: str
    name: str
    version: str
    world: str = ""
    publisher: str = ""
    component: str = ""
    file: str = ""

    @classmethod
    def from_json(cls, d: Any) -> Bundle:
        return _build(cls, d)


@dataclass(frozen=True)
class Task:
    """One task of a job: one attempt on one worker."""

    task_id: str
    attempt: int
    step: str = "run"
    state: str = ""
    worker: str | None = None
    outcome: str | None = None
    message: str | None = None
    fuel_used: int | None = None
    price: int | None = None
    locked: int | None = None
    cost: int | None = None
    escrow: str | None = None

    @classmethod
    def from_json(cls, d: Any) -> Task:
        return _build(cls, d)


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, as ``GET /v1/jobs/{id}`` answers.

    ``state`` is ``submitted``, ``running``, ``done``, ``failed``,
    ``cancelled`` or ``lost``. For ``done``, ``outcome`` is ``ok`` or the
    task error's code and ``message`` its message; for the others,
    ``message`` says why. ``sealed``: its input and output were encrypted
    end to end.
    """

    id: str
    name: str
    state: str
    worker: str | None
    outcome: str | None
    message: str
    output_len: int
    fuel_used: int
    cost: int
    tasks: tuple[Task, ...]
    validation: str
    unreplicated: int
    sealed: bool
    submitted_unix_ms: int
    finished_unix_ms: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether it has ended, one way or another."""
        return self.state in TERMINAL

    @property
    def ok(self) -> bool:
        """Whether it ended with an answer."""
        return self.state == "done" and self.outcome == "ok"

    @classmethod
    def from_json(cls, d: Any) -> JobStatus:
        if not isinstance(d, dict):
            raise TypeError("expected a job as a JSON object")
        status = d.get("status") or {}
        state = str(status.get("state", ""))
        tasks = tuple(Task.from_json(t) for t in d.get("tasks") or [])
        message = status.get("message") or status.get("error") or status.get("reason") or ""
        # A sharded or replicated job's fuel and cost are its tasks' sums.
        fuel = sum(t.fuel_used or 0 for t in tasks) or int(status.get("fuel_used") or 0)
        return cls(
            id=str(d["id"]),
            name=str(d.get("name", "")),
            state=state,
            worker=status.get("worker"),
            outcome=status.get("outcome"),
            message=str(message),
            output_len=int(status.get("output_len") or 0),
            fuel_used=fuel,
            cost=sum(t.cost or 0 for t in tasks),
            tasks=tasks,
            validation=str(d.get("validation", "")),
            unreplicated=int(d.get("unreplicated") or 0),
            sealed=bool(d.get("sealed", False)),
            submitted_unix_ms=int(d.get("submitted_unix_ms") or 0),
            finished_unix_ms=d.get("finished_unix_ms"),
            raw=d,
        )


@dataclass(frozen=True)
class LogLine:
    """One line a job logged through ``host.log``."""

    level: str
    message: str


@dataclass(frozen=True)
class JobLogs:
    """A job's log lines, stderr and signed receipts."""

    lines: tuple[LogLine, ...]
    dropped: int
    stderr: str
    receipts: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Any) -> JobLogs:
        return cls(
            lines=tuple(LogLine(str(x.get("level", "")), str(x.get("message", ""))) for x in d.get("logs") or []),
            dropped=int(d.get("logs_dropped") or 0),
            stderr=str(d.get("stderr", "")),
            receipts=tuple(str(r) for r in d.get("receipts") or []),
        )


@dataclass(frozen=True)
class Event:
    """One event from the node's stream.

    ``type`` is ``job_state``, ``task_state``, ``progress``, ``task_ran``,
    ``task_refused``, ``ledger_op``, ``peer_connected``,
    ``peer_disconnected``, ``health_finding`` or ``health_cleared``; the
    rest of its fields are in ``data`` (``data["state"]`` for a job's
    state, say). Resume a stream after ``seq`` within ``epoch``.
    """

    seq: int
    epoch: str
    time_unix_ms: int
    type: str
    data: dict[str, Any]

    @property
    def job(self) -> str | None:
        """The job it is about, if any."""
        j = self.data.get("job")
        return j if isinstance(j, str) else None

    @classmethod
    def from_json(cls, d: Any) -> Event:
        if not isinstance(d, dict):
            raise TypeError("expected an event as a JSON object")
        rest = {k: v for k, v in d.items() if k not in ("seq", "epoch", "time_unix_ms", "type")}
        return cls(
            seq=int(d["seq"]),
            epoch=str(d["epoch"]),
            time_unix_ms=int(d.get("time_unix_ms") or 0),
            type=str(d["type"]),
            data=rest,
        )


@dataclass(frozen=True)
class Balance:
    """An account's credits."""

    account: str
    available: int
    balance: int
    incoming: int
    held: int
    bonded: int
    pending: int
    frozen: bool
    seq: int

    @classmethod
    def from_json(cls, d: Any) -> Balance:
        return _build(cls, d)


@dataclass(frozen=True)
class Transferred:
    """A transfer made: the op's id and the sender's balance after it."""

    id: str
    applied: bool
    balance: int

    @classmethod
    def from_json(cls, d: Any) -> Transferred:
        return _build(cls, d)


@dataclass(frozen=True)
class LedgerHistory:
    """The ops that concern an account, oldest first; each op as the API
    gives it (``id``, ``author``, ``seq``, ``kind``, ``status``, ...)."""

    account: str
    total: int
    ops: list[dict[str, Any]]

    @classmethod
    def from_json(cls, d: Any) -> LedgerHistory:
        return _build(cls, d)


@dataclass(frozen=True)
class Hold:
    """One escrow and where it stands."""

    escrow: str
    owner: str
    worker: str
    arbiter: str
    amount: int
    price: int
    fuel_limit: int
    collateral: int
    bonded: bool
    task: str | None = None
    deadline_ms: int | None = None
    settled: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Any) -> Hold:
        return _build(cls, d)


@dataclass(frozen=True)
class Offer:
    """A worker's offer, as the node holds it."""

    peer: str
    price: int
    free_slots: int
    slots: int
    load_permille: int
    collateral: int
    executors: list[str]
    arbiter: bool
    draining: bool
    expires_unix_ms: int
    reputation: float | None = None

    @classmethod
    def from_json(cls, d: Any) -> Offer:
        return _build(cls, d)


@dataclass(frozen=True)
class Reputation:
    """What the node knows of one worker, from signed evidence only."""

    peer: str
    score: float
    valid_run: int
    trusted: bool
    replicated_share: float
    success: int
    replicated: int
    timeout: int
    cheat: int
    equivocation: int
    recent: list[Any] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Any) -> Reputation:
        return _build(cls, d)


@dataclass(frozen=True)
class Finding:
    """One thing the health checker found."""

    check: str
    severity: str
    summary: str
    evidence: str
    action: str
    since_unix_ms: int
    subject: str | None = None

    @classmethod
    def from_json(cls, d: Any) -> Finding:
        return _build(cls, d)


@dataclass(frozen=True)
class Health:
    """The health checker's report: ``status`` is ``ok``, ``warning`` or
    ``critical``."""

    status: str
    checked_unix_ms: int
    checks: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def critical(self) -> bool:
        return self.status == "critical"

    @classmethod
    def from_json(cls, d: Any) -> Health:
        return cls(
            status=str(d.get("status", "")),
            checked_unix_ms=int(d.get("checked_unix_ms") or 0),
            checks=tuple(str(c) for c in d.get("checks") or []),
            findings=tuple(Finding.from_json(f) for f in d.get("findings") or []),
        )


@dataclass(frozen=True)
class NodeStatus:
    """What ``GET /v1/node`` answers."""

    peer_id: str
    public_key: str
    peers: int
    workers_known: int
    free_slots: int
    slots: int
    jobs: int
    uptime_secs: int
    #: The node's software version.
    version: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Any) -> NodeStatus:
        return _build(cls, d)
