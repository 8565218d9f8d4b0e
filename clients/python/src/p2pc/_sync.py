"""The blocking client: :class:`ComputeNetwork` and its :class:`Job`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from . import _common as c
from ._errors import JobTimeout, P2pcError, StreamBroken
from ._types import (
    TERMINAL,
    Balance,
    Blob,
    Bundle,
    Event,
    Health,
    Hold,
    JobLogs,
    JobStatus,
    LedgerHistory,
    NodeStatus,
    Offer,
    Reputation,
    Transferred,
)


class Job:
    """A job submitted to the node. Cheap to hold: it is its id and the
    client; every method asks the node."""

    def __init__(self, network: ComputeNetwork, id: str) -> None:
        self.network = network
        self.id = id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def status(self) -> JobStatus:
        """Where the job stands now."""
        return JobStatus.from_json(self.network._json("GET", f"/v1/jobs/{self.id}"))

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Waits until the job ends (or ``timeout`` seconds pass: then
        :class:`JobTimeout`) and returns how it ended, without raising for
        a failed job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = c.LONG_POLL if deadline is None else min(c.LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise JobTimeout(f"job {self.id} did not end within {timeout} s")
            st = JobStatus.from_json(
                self.network._json(
                    "GET", f"/v1/jobs/{self.id}", params={"wait": c.wait_param(left)}, timeout=left + 30
                )
            )
            if st.finished:
                return st

    def result(self, timeout: float | None = None) -> bytes:
        """The job's output, once it ends: waits up to ``timeout`` seconds
        (forever if ``None``). Raises :class:`JobFailed` (with the task's
        ending code) if it ended without an answer."""
        st = self.wait(timeout)
        if not st.ok:
            raise c.failure(st)
        return self.network._bytes(f"/v1/jobs/{self.id}/output")

    def done(self) -> bool:
        """Whether it has ended, one way or another."""
        return self.status().finished

    @property
    def cost(self) -> int:
        """Credits its tasks cost so far (0 on an unpaid network)."""
        return self.status().cost

    @property
    def fuel_used(self) -> int:
        """Fuel its tasks used so far, summed over every task."""
        return self.status().fuel_used

    def receipts(self) -> list[str]:
        """The signed receipts behind its result, hex."""
        d = self.network._json("GET", f"/v1/jobs/{self.id}/tasks")
        return [str(r) for r in d.get("receipts") or []]

    def logs(self) -> JobLogs:
        """What it logged, the end of its stderr, and its receipts."""
        return JobLogs.from_json(self.network._json("GET", f"/v1/jobs/{self.id}/logs"))

    def cancel(self) -> None:
        """Cancels it: nothing more is placed; tasks not answered are
        refunded at their deadlines. :class:`Conflict` if it has ended."""
        self.network._json("POST", f"/v1/jobs/{self.id}/cancel")

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """The job's events, from its submission, until it ends."""
        yield from _job_events(self, timeout)


def _job_events(job: Job, timeout: float | None) -> Iterator[Event]:
    net = job.network
    last: Event | None = None
    # What is kept first; then, unless it ended, follow from there.
    for e in net.events(since=0, job=job.id, follow=False):
        last = e
        yield e
        if e.type == "job_state" and e.data.get("state") in TERMINAL:
            return
    if job.status().finished and last is None:
        return
    since = last.seq if last else None
    epoch = last.epoch if last else None
    for e in net.events(since=since, epoch=epoch, job=job.id, timeout=timeout):
        yield e
        if e.type == "job_state" and e.data.get("state") in TERMINAL:
            return


class ComputeNetwork:
    """A client of one p2pc node, which submits to and speaks for the
    network.

    With no arguments it finds the local node as ``p2pctl`` does: the node
    directory ``$P2PC_NODE`` or ``~/.local/share/p2pc/node``, its Unix
    socket and its token file. ``node=`` names another directory;
    ``url=`` (with ``token=``, ``$P2PC_TOKEN`` or the directory's token)
    reaches a node over TCP. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        node: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = c.locate(url, token, node)
        transport = httpx.HTTPTransport(uds=self.endpoint.uds) if self.endpoint.uds else None
        self._http = httpx.Client(
            base_url=self.endpoint.base_url,
            headers=c.headers(self.endpoint),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def __enter__(self) -> ComputeNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes its connections."""
        self._http.close()

    # -- plumbing -------------------------------------------------------

    def _send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        timeout = kw.pop("timeout", None)
        if timeout is not None:
            kw["timeout"] = httpx.Timeout(timeout, connect=10.0)
        try:
            req = self._http.build_request(method, path, **kw)
            r = self._http.send(req, stream=stream)
        except httpx.TimeoutException as e:
            raise P2pcError(f"the node did not answer {method} {path} in time ({e})") from e
        except httpx.TransportError as e:
            raise c.unreachable(self.endpoint, e) from e
        if r.status_code >= 400:
            body = r.read()
            r.close()
            raise c.error_of(r, body)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._send(method, path, **kw)
        try:
            return r.json()
        except ValueError as e:
            raise P2pcError(f"{method} {path}: the node's answer is not JSON") from e

    def _bytes(self, path: str) -> bytes:
        return self._send("GET", path).content

    # -- node -----------------------------------------------------------

    def status(self) -> NodeStatus:
        """The node's status: peer id, peers, slots, jobs."""
        return NodeStatus.from_json(self._json("GET", "/v1/node"))

    def health(self) -> Health:
        """The health checker's findings."""
        return Health.from_json(self._json("GET", "/v1/health"))

    # -- blobs and bundles ----------------------------------------------

    def put_blob(self, data: c.BlobSource, *, announce: bool = True) -> Blob:
        """Stores ``data`` (bytes, a path, or a binary file) in the node's
        store, streamed; returns its id and length. ``announce=False``
        keeps it off the network's provider records."""
        path = "/v1/blobs" if announce else "/v1/blobs?announce=false"
        if isinstance(data, (bytes, bytearray, memoryview)):
            return Blob.from_json(self._json("POST", path, content=bytes(data), headers=_octets()))
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                return self.put_blob(f, announce=announce)
        return Blob.from_json(self._json("POST", path, content=c.file_pieces(data), headers=_octets(), timeout=None))

    def get_blob(self, cid: str | Blob) -> bytes:
        """A blob's bytes, verified by the node chunk by chunk as it sends
        them."""
        cid = cid.id if isinstance(cid, Blob) else cid
        return self._bytes(f"/v1/blobs/{cid}")

    def save_blob(self, cid: str | Blob, to: str | os.PathLike[str]) -> Path:
        """Streams a blob into the file ``to`` (written beside it first and
        renamed, so it is whole or absent); its path."""
        cid = cid.id if isinstance(cid, Blob) else cid
        path = Path(to)
        tmp = path.with_name(path.name + ".part")
        r = self._send("GET", f"/v1/blobs/{cid}", stream=True)
        try:
            with open(tmp, "wb") as f:
                for piece in r.iter_bytes():
                    f.write(piece)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            r.close()
        tmp.replace(path)
        return path

    def add_bundle(self, path: str | os.PathLike[str]) -> Bundle:
        """Verifies a signed bundle file and keeps it on the node."""
        data = Path(path).read_bytes()
        return Bundle.from_json(self._json("POST", "/v1/bundles", content=data, headers=_octets()))

    def publish(
        self,
        wasm_path: str | os.PathLike[str],
        name: str,
        version: str = "0.1.0",
        *,
        key: str = "node",
        passphrase: str | None = None,
        fuel: int | None = None,
        memory: int | None = None,
        timeout: float | None = None,
        args: list[str] | None = None,
        capabilities: list[str] | None = None,
    ) -> Bundle:
        """Packs a wasm component into a bundle signed with ``key`` from the
        node's keystore, and keeps it. ``fuel``, ``memory`` (bytes) and
        ``timeout`` (seconds) are the limits it asks for."""
        blob = self.put_blob(wasm_path)
        body = c.pack_request(blob.id, name, version, key, passphrase, fuel, memory, timeout, args, capabilities)
        return Bundle.from_json(self._json("POST", "/v1/bundles/pack", json=body))

    # -- jobs -----------------------------------------------------------

    def _bundle(self, bundle: c.BundleRef) -> str:
        if isinstance(bundle, os.PathLike):
            return self.add_bundle(bundle).id
        return c.bundle_id(bundle)

    def _input(self, input: c.JobInput) -> dict[str, str] | None:
        if input is None:
            return None
        if isinstance(input, Blob):
            return {"blob": input.id}
        if isinstance(input, os.PathLike):
            return {"blob": self.put_blob(input, announce=False).id}
        data: bytes | str = input if isinstance(input, str) else bytes(input)
        inline = c.inline_input(data)
        if inline is not None:
            return inline
        raw = data.encode() if isinstance(data, str) else data
        return {"blob": self.put_blob(raw, announce=False).id}

    def submit(
        self,
        bundle: c.BundleRef,
        input: c.JobInput = None,
        *,
        args: list[str] | None = None,
        shards: int | None = None,
        budget: int | None = None,
        max_price: int | None = None,
        validate: str | None = None,
        timeout: float | None = None,
        to: str | None = None,
        min_reputation: float | None = None,
        seal: bool | None = None,
    ) -> Job:
        """Submits a job and returns at once; ``job.result()`` waits for it.

        ``shards`` splits the input of a map-reduce component across
        workers; ``budget`` caps what it may lock and pay, ``max_price`` the
        price per million fuel; ``validate`` is ``"none"``, ``"2-of-3"``
        (any ``K-of-N``) or ``"adaptive"``; ``timeout`` is in seconds; ``to``
        names the worker's peer id; ``seal=True`` encrypts the input and
        output end to end (``None``: the node's default, on for paid jobs).
        Inputs stored for a job are not announced to the network.
        """
        body = c.submission(
            self._bundle(bundle),
            self._input(input),
            args=args,
            shards=shards,
            budget=budget,
            max_price=max_price,
            validate=validate,
            timeout=timeout,
            to=to,
            min_reputation=min_reputation,
            seal=seal,
        )
        return Job(self, str(self._json("POST", "/v1/jobs", json=body)["job"]))

    def job(self, id: str) -> Job:
        """The job of that id (checked: :class:`NotFound` if the node has
        none)."""
        self._json("GET", f"/v1/jobs/{id}")
        return Job(self, id)

    def jobs(self, state: str | None = None, limit: int = 50) -> list[JobStatus]:
        """The node's jobs, newest first; ``state`` filters them."""
        params: dict[str, str] = {"limit": str(limit)}
        if state:
            params["state"] = state
        return [JobStatus.from_json(j) for j in self._json("GET", "/v1/jobs", params=params)["jobs"]]

    def map(self, bundle: c.BundleRef, inputs: Iterable[c.JobInput], **options: Any) -> list[Job]:
        """Submits one job per input, with the same options as
        :meth:`submit`; the jobs in the inputs' order."""
        ref = self._bundle(bundle)
        return [self.submit(ref, i, **options) for i in inputs]

    def gather(self, jobs: Iterable[Job], timeout: float | None = None) -> list[bytes]:
        """Every job's output, in order; raises the first
        :class:`JobFailed`. ``timeout`` bounds the whole wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for j in jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(j.result(left))
        return out

    def as_completed(self, jobs: Iterable[Job], timeout: float | None = None) -> Iterator[Job]:
        """Yields the jobs as they end (done or not), first ended first.

        Follows the node's event stream, so a thousand jobs cost one
        connection, not a thousand polls.
        """
        pending = {j.id: j for j in jobs}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise JobTimeout(f"{len(pending)} jobs had not ended within {timeout} s")
            try:
                # The stream is opened first, so no ending is missed
                # between the check below and the first event.
                with self._event_lines({"types": "job_state"}, left) as lines:
                    for id in [i for i in pending if self._finished(i)]:
                        yield pending.pop(id)
                    if not pending:
                        return
                    for e in lines:
                        if e.job in pending and e.data.get("state") in TERMINAL:
                            yield pending.pop(e.job)
                            if not pending:
                                return
            except StreamBroken:
                continue  # fell behind: check again and follow anew

    def _finished(self, id: str) -> bool:
        return JobStatus.from_json(self._json("GET", f"/v1/jobs/{id}")).finished

    # -- events ---------------------------------------------------------

    @contextmanager
    def _event_lines(self, query: dict[str, str], timeout: float | None) -> Iterator[Iterator[Event]]:
        r = self._send(
            "GET",
            "/v1/events",
            params=query,
            headers={"Accept": "application/x-ndjson"},
            stream=True,
            timeout=timeout,
        )
        try:
            yield _lines(r, timeout)
        finally:
            r.close()

    def events(
        self,
        since: int | None = None,
        *,
        epoch: str | None = None,
        types: list[str] | str | None = None,
        job: str | None = None,
        follow: bool = True,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """The node's events: from now, or after ``since`` (0: all still
        kept) in ``epoch``. Raises :class:`EventsGone` if those are no
        longer kept or the node restarted. ``follow=False`` stops at the
        newest; ``timeout`` bounds each wait for the next event."""
        with self._event_lines(c.event_query(since, epoch, types, job, follow), timeout) as lines:
            yield from lines

    # -- ledger and market ----------------------------------------------

    def balance(self, account: str | None = None) -> Balance:
        """An account's credits: the node's own by default."""
        return Balance.from_json(self._json("GET", "/v1/ledger/balance", params=_account(account)))

    def transfer(self, to: str, amount: int) -> Transferred:
        """Sends ``amount`` credits from the node's account to ``to`` (a
        public key, 64 hex digits)."""
        return Transferred.from_json(
            self._json("POST", "/v1/ledger/transfers", json={"to": to, "amount": amount})
        )

    def history(self, account: str | None = None, limit: int | None = None) -> LedgerHistory:
        """The ledger ops that concern an account, oldest first."""
        params = _account(account)
        if limit is not None:
            params["limit"] = str(limit)
        return LedgerHistory.from_json(self._json("GET", "/v1/ledger/history", params=params))

    def holds(self, account: str | None = None) -> list[Hold]:
        """Escrows: all, or those of ``account``."""
        d = self._json("GET", "/v1/ledger/holds", params=_account(account))
        return [Hold.from_json(h) for h in d.get("holds") or []]

    def offers(self) -> list[Offer]:
        """Workers' fresh offers, cheapest first."""
        return [Offer.from_json(o) for o in self._json("GET", "/v1/market/offers")]

    def reputation(self, peer: str | None = None) -> Reputation | list[Reputation]:
        """What the node knows of one worker, or of every worker it used."""
        if peer is None:
            return [Reputation.from_json(r) for r in self._json("GET", "/v1/reputation")]
        return Reputation.from_json(self._json("GET", f"/v1/reputation/{peer}"))


def _lines(r: httpx.Response, timeout: float | None) -> Iterator[Event]:
    try:
        for line in r.iter_lines():
            if line:
                yield Event.from_json(json.loads(line))
    except httpx.ReadTimeout as e:
        raise JobTimeout(f"no event within {timeout} s") from e
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        raise StreamBroken(
            "the event stream was cut: this client fell behind the node's buffer "
            "([api] events_buffer); resume with since=",
        ) from e


def _octets() -> dict[str, str]:
    return {"Content-Type": "application/octet-stream"}


def _account(account: str | None) -> dict[str, str]:
    return {"account": account} if account else {}
