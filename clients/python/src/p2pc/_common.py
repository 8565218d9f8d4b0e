"""What the sync and async clients share: finding the node, building
requests and reading answers. No I/O but reading the node's token file."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import httpx

from ._errors import ConnectionError, JobFailed, P2pcError, from_problem
from ._types import Blob, Bundle, JobStatus

TOKEN_FILE = "api.token"
SOCKET_FILE = "api.sock"

#: Inputs up to this size go inline with the submission; larger ones are
#: stored as a blob first (the node's ``[api] max_body`` is 1 MiB by
#: default, and base64 grows bytes by a third).
INLINE_INPUT = 256 * 1024
#: The longest a single ``?wait=`` asks the node to hold a job read.
LONG_POLL = 30.0
#: Bytes per piece when streaming a file to the node.
PIECE = 1 << 20

BlobSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes]]
"""What ``put_blob`` takes: bytes, a path (``str`` or ``PathLike``), or a
binary file open for reading."""

JobInput = Union[bytes, bytearray, memoryview, str, Blob, "os.PathLike[str]", None]
"""What a job's input may be: bytes, text (``str``, sent as UTF-8), a
stored :class:`Blob`, or a path (``PathLike``) to a file to send."""

BundleRef = Union[Bundle, str, "os.PathLike[str]"]
"""A bundle: a :class:`Bundle`, a bundle id, or the path of a signed
bundle file (``PathLike``) to add first."""


def default_node_dir() -> Path:
    """The node directory ``p2pctl`` uses without ``--node``:
    ``$P2PC_NODE``, else ``$XDG_DATA_HOME/p2pc/node``, else
    ``~/.local/share/p2pc/node``."""
    env = os.environ.get("P2PC_NODE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "p2pc" / "node"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the node's API."""

    base_url: str
    token: str | None
    uds: str | None
    description: str


def read_token(dir: Path) -> str | None:
    try:
        return (dir / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConnectionError(f"cannot read the node's token at {dir / TOKEN_FILE}: {e}") from e


def locate(url: str | None, token: str | None, node: str | os.PathLike[str] | None) -> Endpoint:
    """Finds the node as ``p2pctl`` does.

    With ``url``, the API at that address (``http://127.0.0.1:7420``); the
    token is ``token``, else ``$P2PC_TOKEN``, else the one in the node
    directory. Without it, the Unix socket of the node directory (``node``,
    else the default), with that directory's token.
    """
    dir = Path(node) if node is not None else default_node_dir()
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        tok = token or os.environ.get("P2PC_TOKEN") or read_token(dir)
        return Endpoint(url.rstrip("/"), tok, None, url)
    sock = dir / SOCKET_FILE
    if not sock.exists():
        raise ConnectionError(
            f"no node is running on {dir}; start one with `p2pctl node start --node {dir}`, "
            "or pass url= for a node elsewhere"
        )
    tok = token or read_token(dir)
    if tok is None:
        raise ConnectionError(f"{dir} has no {TOKEN_FILE}; pass token= (`p2pctl node token` shows it)")
    return Endpoint("http://p2pc.node", tok, str(sock), str(dir))


def headers(ep: Endpoint) -> dict[str, str]:
    h = {"User-Agent": "p2pc-python/0.1", "Accept": "application/json"}
    if ep.token:
        h["Authorization"] = f"Bearer {ep.token}"
    return h


def error_of(r: httpx.Response, body: bytes) -> P2pcError:
    """The exception for an error answer whose body has been read."""
    parsed: Any = None
    try:
        parsed = json.loads(body)
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()[:500]
    return from_problem(r.status_code, parsed, text or r.reason_phrase)


def unreachable(ep: Endpoint, e: Exception) -> ConnectionError:
    return ConnectionError(f"cannot reach the node at {ep.description} ({e}); is it running?")


def wait_param(seconds: float) -> str:
    return f"{max(0, int(seconds * 1000))}ms"


def bundle_id(ref: Bundle | str) -> str:
    return ref.id if isinstance(ref, Bundle) else ref


def inline_input(data: bytes | str) -> dict[str, str] | None:
    """The input inline, or ``None`` when it is too large to send so."""
    if isinstance(data, str):
        if len(data.encode()) <= INLINE_INPUT:
            return {"text": data}
        return None
    if len(data) <= INLINE_INPUT:
        return {"base64": base64.b64encode(data).decode()}
    return None


def submission(
    bundle: str,
    input: dict[str, str] | None,
    *,
    args: list[str] | None,
    shards: int | None,
    budget: int | None,
    max_price: int | None,
    validate: str | None,
    timeout: float | None,
    to: str | None,
    min_reputation: float | None,
    seal: bool | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"bundle": bundle}
    if input is not None:
        body["input"] = input
    if args:
        body["args"] = list(args)
    if shards is not None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        body["shards"] = shards
    if budget is not None:
        body["budget"] = budget
    if max_price is not None:
        body["max_price"] = max_price
    if validate is not None:
        body["validation"] = validate
    if timeout is not None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        body["timeout_ms"] = int(timeout * 1000)
    if to is not None:
        body["to"] = to
    if min_reputation is not None:
        body["min_reputation"] = min_reputation
    if seal is not None:
        body["seal"] = seal
    return body


def pack_request(
    component: str,
    name: str,
    version: str,
    key: str,
    passphrase: str | None,
    fuel: int | None,
    memory: int | None,
    timeout: float | None,
    args: list[str] | None,
    capabilities: list[str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"component": component, "name": name, "version": version, "key": key}
    if passphrase is not None:
        body["passphrase"] = passphrase
    if fuel is not None:
        body["fuel"] = fuel
    if memory is not None:
        body["memory_bytes"] = memory
    if timeout is not None:
        body["timeout_ms"] = int(timeout * 1000)
    if args:
        body["args"] = list(args)
    if capabilities:
        body["capabilities"] = list(capabilities)
    return body


def failure(status: JobStatus) -> JobFailed:
    """The exception for a job that ended without an answer."""
    if status.state == "done":
        code = status.outcome or "failed"
    else:
        code = status.state
        # A job that failed after its tasks answered: the last one's code.
        for t in reversed(status.tasks):
            if t.outcome and t.outcome != "ok":
                code = t.outcome
                break
    return JobFailed(status.id, code, status.message)


def event_query(
    since: int | None, epoch: str | None, types: list[str] | str | None, job: str | None, follow: bool
) -> dict[str, str]:
    q: dict[str, str] = {}
    if since is not None:
        q["since"] = str(since)
    if epoch is not None:
        q["epoch"] = epoch
    if types:
        q["types"] = types if isinstance(types, str) else ",".join(types)
    if job is not None:
        q["job"] = job
    if not follow:
        q["follow"] = "false"
    return q


def file_pieces(f: IO[bytes]) -> Any:
    while True:
        piece = f.read(PIECE)
        if not piece:
            return
        yield piece
