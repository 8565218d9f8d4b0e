"""The asyncio client: :class:`AsyncComputeNetwork` and its
:class:`AsyncJob`, the same methods as the blocking ones, as coroutines."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Generator, Iterable
from contextlib import asynccontextmanager
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


class AsyncJob:
    """A job submitted to the node; ``await job`` is ``await
    job.result()``."""

    def __init__(self, network: AsyncComputeNetwork, id: str) -> None:
        self.network = network
        self.id = id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncJob) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __await__(self) -> Generator[Any, None, bytes]:
        return self.result().__await__()

    async def status(self) -> JobStatus:
        """Where the job stands now."""
        return JobStatus.from_json(await self.network._json("GET", f"/v1/jobs/{self.id}"))

    async def wait(self, timeout: float | None = None) -> JobStatus:
        """Waits until the job ends (or :class:`JobTimeout`) and returns how
        it ended, without raising for a failed job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = c.LONG_POLL if deadline is None else min(c.LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise JobTimeout(f"job {self.id} did not end within {timeout} s")
            st = JobStatus.from_json(
                await self.network._json(
                    "GET", f"/v1/jobs/{self.id}", params={"wait": c.wait_param(left)}, timeout=left + 30
                )
            )
            if st.finished:
                return st

    async def result(self, timeout: float | None = None) -> bytes:
        """The job's output once it ends; :class:`JobFailed` if it ended
        without one."""
        st = await self.wait(timeout)
        if not st.ok:
            raise c.failure(st)
        return await self.network._bytes(f"/v1/jobs/{self.id}/output")

    async def done(self) -> bool:
        """Whether it has ended."""
        return (await self.status()).finished

    async def cost(self) -> int:
        """Credits its tasks cost so far."""
        return (await self.status()).cost

    async def fuel_used(self) -> int:
        """Fuel its tasks used so far, summed over every task."""
        return (await self.status()).fuel_used

    async def receipts(self) -> list[str]:
        """The signed receipts behind its result, hex."""
        d = await self.network._json("GET", f"/v1/jobs/{self.id}/tasks")
        return [str(r) for r in d.get("receipts") or []]

    async def logs(self) -> JobLogs:
        """What it logged, the end of its stderr, and its receipts."""
        return JobLogs.from_json(await self.network._json("GET", f"/v1/jobs/{self.id}/logs"))

    async def cancel(self) -> None:
        """Cancels it; :class:`Conflict` if it has ended."""
        await self.network._json("POST", f"/v1/jobs/{self.id}/cancel")

    async def events(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """The job's events, from its submission, until it ends."""
        net = self.network
        last: Event | None = None
        async for e in net.events(since=0, job=self.id, follow=False):
            last = e
            yield e
            if e.type == "job_state" and e.data.get("state") in TERMINAL:
                return
        if last is None and (await self.status()).finished:
            return
        since = last.seq if last else None
        epoch = last.epoch if last else None
        async for e in net.events(since=since, epoch=epoch, job=self.id, timeout=timeout):
            yield e
            if e.type == "job_state" and e.data.get("state") in TERMINAL:
                return


class AsyncComputeNetwork:
    """The asyncio form of :class:`ComputeNetwork`: the same arguments and
    methods, as coroutines. ``async with AsyncComputeNetwork() as net:``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        node: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = c.locate(url, token, node)
        transport = httpx.AsyncHTTPTransport(uds=self.endpoint.uds) if self.endpoint.uds else None
        self._http = httpx.AsyncClient(
            base_url=self.endpoint.base_url,
            headers=c.headers(self.endpoint),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def __aenter__(self) -> AsyncComputeNetwork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes its connections."""
        await self._http.aclose()

    async def _send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        timeout = kw.pop("timeout", None)
        if timeout is not None:
            kw["timeout"] = httpx.Timeout(timeout, connect=10.0)
        try:
            req = self._http.build_request(method, path, **kw)
            r = await self._http.send(req, stream=stream)
        except httpx.TimeoutException as e:
            raise P2pcError(f"the node did not answer {method} {path} in time ({e})") from e
        except httpx.TransportError as e:
            raise c.unreachable(self.endpoint, e) from e
        if r.status_code >= 400:
            body = await r.aread()
            await r.aclose()
            raise c.error_of(r, body)
        return r

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = await self._send(method, path, **kw)
        try:
            return r.json()
        except ValueError as e:
            raise P2pcError(f"{method} {path}: the node's answer is not JSON") from e

    async def _bytes(self, path: str) -> bytes:
        return (await self._send("GET", path)).content

    async def status(self) -> NodeStatus:
        """The node's status."""
        return NodeStatus.from_json(await self._json("GET", "/v1/node"))

    async def health(self) -> Health:
        """The health checker's findings."""
        return Health.from_json(await self._json("GET", "/v1/health"))

    async def put_blob(self, data: c.BlobSource, *, announce: bool = True) -> Blob:
        """Stores bytes, a path's file or a binary file, streamed;
        ``announce=False`` keeps it off the network's provider records."""
        octets = {"Content-Type": "application/octet-stream"}
        path = "/v1/blobs" if announce else "/v1/blobs?announce=false"
        if isinstance(data, (bytes, bytearray, memoryview)):
            return Blob.from_json(await self._json("POST", path, content=bytes(data), headers=octets))
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                return await self.put_blob(f, announce=announce)

        async def pieces() -> AsyncIterator[bytes]:
            while True:
                # Reading a file blocks: off the event loop.
                piece = await asyncio.to_thread(data.read, c.PIECE)
                if not piece:
                    return
                yield piece

        return Blob.from_json(await self._json("POST", path, content=pieces(), headers=octets, timeout=None))

    async def get_blob(self, cid: str | Blob) -> bytes:
        """A blob's bytes."""
        cid = cid.id if isinstance(cid, Blob) else cid
        return await self._bytes(f"/v1/blobs/{cid}")

    async def add_bundle(self, path: str | os.PathLike[str]) -> Bundle:
        """Verifies a signed bundle file and keeps it on the node."""
        data = await asyncio.to_thread(Path(path).read_bytes)
        return Bundle.from_json(
            await self._json(
                "POST", "/v1/bundles", content=data, headers={"Content-Type": "application/octet-stream"}
            )
        )

    async def publish(
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
        node's keystore, and keeps it."""
        blob = await self.put_blob(wasm_path)
        body = c.pack_request(blob.id, name, version, key, passphrase, fuel, memory, timeout, args, capabilities)
        return Bundle.from_json(await self._json("POST", "/v1/bundles/pack", json=body))

    async def _bundle(self, bundle: c.BundleRef) -> str:
        if isinstance(bundle, os.PathLike):
            return (await self.add_bundle(bundle)).id
        return c.bundle_id(bundle)

    async def _input(self, input: c.JobInput) -> dict[str, str] | None:
        if input is None:
            return None
        if isinstance(input, Blob):
            return {"blob": input.id}
        if isinstance(input, os.PathLike):
            return {"blob": (await self.put_blob(input, announce=False)).id}
        data: bytes | str = input if isinstance(input, str) else bytes(input)
        inline = c.inline_input(data)
        if inline is not None:
            return inline
        raw = data.encode() if isinstance(data, str) else data
        return {"blob": (await self.put_blob(raw, announce=False)).id}

    async def submit(
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
    ) -> AsyncJob:
        """Submits a job and returns at once; ``await job`` waits for its
        output. The options are :meth:`ComputeNetwork.submit`'s."""
        body = c.submission(
            await self._bundle(bundle),
            await self._input(input),
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
        return AsyncJob(self, str((await self._json("POST", "/v1/jobs", json=body))["job"]))

    async def job(self, id: str) -> AsyncJob:
        """The job of that id (:class:`NotFound` if the node has none)."""
        await self._json("GET", f"/v1/jobs/{id}")
        return AsyncJob(self, id)

    async def map(self, bundle: c.BundleRef, inputs: Iterable[c.JobInput], **options: Any) -> list[AsyncJob]:
        """One job per input, submitted in order; the jobs in that order."""
        ref = await self._bundle(bundle)
        return [await self.submit(ref, i, **options) for i in inputs]

    async def gather(self, jobs: Iterable[AsyncJob], timeout: float | None = None) -> list[bytes]:
        """Every job's output, in order, waited for together; raises the
        first :class:`JobFailed`."""
        waits = [j.result() for j in jobs]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*waits), timeout))
        except asyncio.TimeoutError as e:
            raise JobTimeout(f"the jobs had not all ended within {timeout} s") from e

    async def as_completed(self, jobs: Iterable[AsyncJob], timeout: float | None = None) -> AsyncIterator[AsyncJob]:
        """The jobs as they end, first ended first, from one event stream."""
        pending = {j.id: j for j in jobs}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise JobTimeout(f"{len(pending)} jobs had not ended within {timeout} s")
            try:
                async with self._event_lines({"types": "job_state"}, left) as lines:
                    for id in list(pending):
                        if JobStatus.from_json(await self._json("GET", f"/v1/jobs/{id}")).finished:
                            yield pending.pop(id)
                    if not pending:
                        return
                    async for e in lines:
                        if e.job in pending and e.data.get("state") in TERMINAL:
                            yield pending.pop(e.job)
                            if not pending:
                                return
            except StreamBroken:
                continue

    @asynccontextmanager
    async def _event_lines(self, query: dict[str, str], timeout: float | None) -> AsyncIterator[AsyncIterator[Event]]:
        r = await self._send(
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
            await r.aclose()

    async def events(
        self,
        since: int | None = None,
        *,
        epoch: str | None = None,
        types: list[str] | str | None = None,
        job: str | None = None,
        follow: bool = True,
        timeout: float | None = None,
    ) -> AsyncIterator[Event]:
        """The node's events, as :meth:`ComputeNetwork.events`."""
        async with self._event_lines(c.event_query(since, epoch, types, job, follow), timeout) as lines:
            async for e in lines:
                yield e

    async def balance(self, account: str | None = None) -> Balance:
        """An account's credits: the node's own by default."""
        params = {"account": account} if account else {}
        return Balance.from_json(await self._json("GET", "/v1/ledger/balance", params=params))

    async def transfer(self, to: str, amount: int) -> Transferred:
        """Sends credits from the node's account."""
        return Transferred.from_json(
            await self._json("POST", "/v1/ledger/transfers", json={"to": to, "amount": amount})
        )

    async def history(self, account: str | None = None, limit: int | None = None) -> LedgerHistory:
        """The ledger ops that concern an account."""
        params: dict[str, str] = {"account": account} if account else {}
        if limit is not None:
            params["limit"] = str(limit)
        return LedgerHistory.from_json(await self._json("GET", "/v1/ledger/history", params=params))

    async def holds(self, account: str | None = None) -> list[Hold]:
        """Escrows: all, or those of ``account``."""
        params = {"account": account} if account else {}
        d = await self._json("GET", "/v1/ledger/holds", params=params)
        return [Hold.from_json(h) for h in d.get("holds") or []]

    async def offers(self) -> list[Offer]:
        """Workers' fresh offers, cheapest first."""
        return [Offer.from_json(o) for o in await self._json("GET", "/v1/market/offers")]

    async def reputation(self, peer: str | None = None) -> Reputation | list[Reputation]:
        """What the node knows of one worker, or of every worker it used."""
        if peer is None:
            return [Reputation.from_json(r) for r in await self._json("GET", "/v1/reputation")]
        return Reputation.from_json(await self._json("GET", f"/v1/reputation/{peer}"))


async def _lines(r: httpx.Response, timeout: float | None) -> AsyncIterator[Event]:
    try:
        async for line in r.aiter_lines():
            if line:
                yield Event.from_json(json.loads(line))
    except httpx.ReadTimeout as e:
        raise JobTimeout(f"no event within {timeout} s") from e
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        raise StreamBroken(
            "the event stream was cut: this client fell behind the node's buffer "
            "([api] events_buffer); resume with since="
        ) from e
