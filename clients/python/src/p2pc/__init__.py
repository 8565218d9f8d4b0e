"""p2pc: send work to a peer-to-peer WebAssembly compute network.

The client talks to one p2pc node through its HTTP API; the node places
jobs on the network's workers, pays them and checks their answers.

>>> from p2pc import ComputeNetwork
>>> with ComputeNetwork() as net:                        # the local node
...     bundle = net.publish("wordcount.wasm", "wordcount")
...     jobs = net.map(bundle, ["a b a", "c c c"])
...     print(net.gather(jobs))                            # doctest: +SKIP

:class:`AsyncComputeNetwork` has the same methods as coroutines. Every
failure raises a :class:`P2pcError`; none is returned as ``None``.
"""

from ._async import AsyncComputeNetwork, AsyncJob
from ._errors import (
    AuthError,
    BadRequest,
    Conflict,
    ConnectionError,
    EventsGone,
    InsufficientCredits,
    JobFailed,
    JobTimeout,
    NotFound,
    P2pcError,
    Rejected,
    ServerError,
    StreamBroken,
    Unavailable,
)
from ._sync import ComputeNetwork, Job
from ._types import (
    Balance,
    Blob,
    Bundle,
    Event,
    Finding,
    Health,
    Hold,
    JobLogs,
    JobStatus,
    LedgerHistory,
    LogLine,
    NodeStatus,
    Offer,
    Reputation,
    Task,
    Transferred,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncComputeNetwork",
    "AsyncJob",
    "AuthError",
    "BadRequest",
    "Balance",
    "Blob",
    "Bundle",
    "ComputeNetwork",
    "Conflict",
    "ConnectionError",
    "Event",
    "EventsGone",
    "Finding",
    "Health",
    "Hold",
    "InsufficientCredits",
    "Job",
    "JobFailed",
    "JobLogs",
    "JobStatus",
    "JobTimeout",
    "LedgerHistory",
    "LogLine",
    "NodeStatus",
    "NotFound",
    "Offer",
    "P2pcError",
    "Rejected",
    "Reputation",
    "ServerError",
    "StreamBroken",
    "Task",
    "Transferred",
    "Unavailable",
]
