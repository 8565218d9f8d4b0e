"""The blocking client against a real three-node paid network."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import p2pc
from p2pc import AuthError, ComputeNetwork, InsufficientCredits, JobFailed, NotFound

from .conftest import WAIT, Network, guest

TEXT = "the cat and the hat\nthe end\n" * 50


def wordcount(text: str) -> Counter[str]:
    return Counter(w for w in text.split())


def counts_of(output: bytes) -> Counter[str]:
    c: Counter[str] = Counter()
    for line in output.decode().splitlines():
        n, word = line.split("\t")
        c[word] = int(n)
    return c


def quiet(net: ComputeNetwork) -> p2pc.Balance:
    """The submitter's balance once no hold of its is open."""
    deadline = time.monotonic() + WAIT
    while True:
        b = net.balance()
        if b.held == 0:
            return b
        assert time.monotonic() < deadline, f"holds still open: {b}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def net(network: Network) -> ComputeNetwork:
    return ComputeNetwork(node=network.submitter.dir)


def test_a_plain_job_and_its_cost_moves_the_balance(net: ComputeNetwork, network: Network) -> None:
    hello = net.publish(guest("hello"), "hello", "1.0.0")
    assert hello.name == "hello" and len(hello.id) == 64
    before = quiet(net)
    job = net.submit(hello, "python", to=network.worker.peer_id, max_price=3)
    assert job.result(timeout=WAIT) == b"Hello, python!"
    st = job.status()
    assert st.ok and st.worker == network.worker.peer_id
    assert job.fuel_used > 0
    cost = job.cost
    assert cost > 0, st
    assert job.receipts(), "a signed receipt backs the result"
    after = quiet(net)
    assert before.available - after.available == cost, (before, after, cost)


def test_paid_jobs_are_sealed_unless_told_otherwise(net: ComputeNetwork, network: Network) -> None:
    hello = net.publish(guest("hello"), "hello", "1.0.0")
    big = "s" * (300 << 10)  # stored as a blob, unannounced, then sealed
    sealed = net.submit(hello, big, to=network.worker.peer_id)
    assert sealed.result(timeout=WAIT) == f"Hello, {big}!".encode()
    assert sealed.status().sealed
    plain = net.submit(hello, "in the clear", to=network.worker.peer_id, seal=False)
    assert plain.result(timeout=WAIT) == b"Hello, in the clear!"
    assert not plain.status().sealed


def test_a_sharded_job(net: ComputeNetwork) -> None:
    wc = net.publish(guest("wordcount"), "wordcount")
    job = net.submit(wc, TEXT, shards=3)
    assert counts_of(job.result(timeout=WAIT)) == wordcount(TEXT)
    steps = {t.step for t in job.status().tasks}
    assert "reduce" in steps and any(s.startswith("map") for s in steps), steps


def test_map_over_twenty_inputs_and_gather(net: ComputeNetwork) -> None:
    hello = net.publish(guest("hello"), "hello")
    names = [f"n{i}" for i in range(20)]
    jobs = net.map(hello, names)
    assert len({j.id for j in jobs}) == 20
    assert net.gather(jobs, timeout=WAIT) == [f"Hello, {n}!".encode() for n in names]


def test_as_completed_yields_in_the_order_jobs_end(net: ComputeNetwork, network: Network) -> None:
    hello = net.publish(guest("hello"), "hello")
    mandel = net.publish(guest("mandelbrot"), "mandelbrot")
    slow = net.submit(mandel, "800 800 800", to=network.worker.peer_id, max_price=3, timeout=WAIT)
    quick = [net.submit(hello, f"q{i}", to=network.arbiter.peer_id) for i in range(3)]
    order = list(net.as_completed([slow, *quick], timeout=WAIT))
    assert sorted(j.id for j in order) == sorted(j.id for j in [slow, *quick])
    assert order[-1] == slow, "the slow job, on another worker, ends last"
    ends = [j.status().finished_unix_ms or 0 for j in order]
    assert ends == sorted(ends), ends


def test_out_of_fuel_raises_job_failed(net: ComputeNetwork) -> None:
    starved = net.publish(guest("mandelbrot"), "starved", fuel=100_000)
    job = net.submit(starved, "320 240 200")
    with pytest.raises(JobFailed) as e:
        job.result(timeout=WAIT)
    assert e.value.code == "out_of_fuel", e.value
    assert e.value.job_id == job.id


def test_errors_are_exceptions(net: ComputeNetwork, network: Network, tmp_path: Path) -> None:
    with ComputeNetwork(url=network.submitter.url, token="wrong") as bad:
        with pytest.raises(AuthError):
            bad.status()
    with pytest.raises(NotFound):
        net.job("0" * 32)
    with pytest.raises(InsufficientCredits) as e:
        net.transfer(network.worker.public_key, 10**15)
    assert e.value.status == 402
    with pytest.raises(p2pc.ConnectionError, match="no node is running"):
        ComputeNetwork(node=tmp_path)
    with pytest.raises(p2pc.BadRequest):
        net.events(types=["nonsense"], follow=False).__next__()


def test_tcp_with_a_token_blobs_and_events(net: ComputeNetwork, network: Network, tmp_path: Path) -> None:
    with ComputeNetwork(url=network.submitter.url, token=network.submitter.token) as tcp:
        assert tcp.status().peer_id == network.submitter.peer_id
        big = bytes(range(256)) * (12 * 1024)  # 3 MiB, streamed from a file
        src = tmp_path / "big.bin"
        src.write_bytes(big)
        blob = tcp.put_blob(src)
        assert blob.len == len(big)
        assert tcp.get_blob(blob) == big
        out = tcp.save_blob(blob.id, tmp_path / "copy.bin")
        assert out.read_bytes() == big
        hello = tcp.publish(guest("hello"), "hello")
        job = tcp.submit(hello, "events")
        states = [e.data["state"] for e in job.events(timeout=WAIT) if e.type == "job_state"]
        assert states[0] == "submitted" and states[-1] == "done", states
        assert job.result(timeout=WAIT) == b"Hello, events!"
        kept = list(tcp.events(since=0, job=job.id, follow=False))
        assert [e.seq for e in kept] == sorted(e.seq for e in kept)
        assert net.health().status in ("ok", "warning", "critical")
        assert any(o.peer == network.worker.peer_id for o in tcp.offers())
        assert tcp.history().total >= 1
        rep = tcp.reputation(network.worker.peer_id)
        assert isinstance(rep, p2pc.Reputation) and rep.success >= 1
