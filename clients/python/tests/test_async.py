"""The asyncio client against the same real network."""

from __future__ import annotations

import asyncio
import time

import pytest

import p2pc
from p2pc import AsyncComputeNetwork, AuthError, InsufficientCredits, JobFailed, NotFound

from .conftest import WAIT, Network, guest
from .test_sync import TEXT, counts_of, wordcount

pytestmark = pytest.mark.anyio


async def quiet(net: AsyncComputeNetwork) -> p2pc.Balance:
    deadline = time.monotonic() + WAIT
    while True:
        b = await net.balance()
        if b.held == 0:
            return b
        assert time.monotonic() < deadline, f"holds still open: {b}"
        await asyncio.sleep(0.1)


async def test_the_async_client_does_the_same(network: Network) -> None:
    async with AsyncComputeNetwork(node=network.submitter.dir) as net:
        hello = await net.publish(guest("hello"), "hello")
        before = await quiet(net)
        job = await net.submit(hello, "async", to=network.worker.peer_id, max_price=3)
        assert await job == b"Hello, async!"
        cost = await job.cost()
        assert cost > 0 and await job.fuel_used() > 0
        assert await job.receipts()
        after = await quiet(net)
        assert before.available - after.available == cost

        wc = await net.publish(guest("wordcount"), "wordcount")
        sharded = await net.submit(wc, TEXT, shards=3)
        assert counts_of(await sharded.result(timeout=WAIT)) == wordcount(TEXT)

        names = [f"a{i}" for i in range(20)]
        jobs = await net.map(hello, names)
        assert await net.gather(jobs, timeout=WAIT) == [f"Hello, {n}!".encode() for n in names]

        mandel = await net.publish(guest("mandelbrot"), "mandelbrot")
        slow = await net.submit(mandel, "800 800 800", to=network.worker.peer_id, max_price=3)
        quick = [await net.submit(hello, f"q{i}", to=network.arbiter.peer_id) for i in range(3)]
        order = [j async for j in net.as_completed([slow, *quick], timeout=WAIT)]
        assert sorted(j.id for j in order) == sorted(j.id for j in [slow, *quick])
        assert order[-1] == slow

        starved = await net.publish(guest("mandelbrot"), "starved", fuel=100_000)
        with pytest.raises(JobFailed) as e:
            await (await net.submit(starved, "320 240 200")).result(timeout=WAIT)
        assert e.value.code == "out_of_fuel"

        with pytest.raises(NotFound):
            await net.job("0" * 32)
        with pytest.raises(InsufficientCredits):
            await net.transfer(network.worker.public_key, 10**15)

    async with AsyncComputeNetwork(url=network.submitter.url, token="wrong") as bad:
        with pytest.raises(AuthError):
            await bad.status()


async def test_a_jobs_events_arrive_in_order(network: Network) -> None:
    async with AsyncComputeNetwork(url=network.submitter.url, token=network.submitter.token) as net:
        hello = await net.publish(guest("hello"), "hello")
        job = await net.submit(hello, "stream")
        events = [e async for e in job.events(timeout=WAIT)]
        states = [e.data["state"] for e in events if e.type == "job_state"]
        assert states == ["submitted", "running", "done"], states
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert len({e.epoch for e in events}) == 1
        assert await job == b"Hello, stream!"
        # An epoch that is not the node's: told, with where to resume.
        with pytest.raises(p2pc.EventsGone) as gone:
            async for _ in net.events(since=1, epoch="0000000000000000", follow=False):
                pass
        assert gone.value.restarted
        assert gone.value.resume["epoch"] == events[0].epoch
