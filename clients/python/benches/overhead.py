"""The SDK's per-job overhead: N tiny jobs through ``map`` and ``gather``
against the same jobs through the HTTP API with plain httpx calls (submit
each, then wait for each and read its output), in the same run on the same
three-node network (the one the tests use), alternating, two rounds each.

    .venv/bin/python clients/python/benches/overhead.py   # P2PC_BENCH_JOBS=1000
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests import testnet  # noqa: E402

from p2pc import ComputeNetwork  # noqa: E402

JOBS = int(os.environ.get("P2PC_BENCH_JOBS", "1000"))


def plain(url: str, token: str, bundle: str, names: list[str]) -> list[bytes]:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=h, timeout=60) as http:
        ids = []
        for n in names:
            body = {"bundle": bundle, "input": {"base64": base64.b64encode(n.encode()).decode()}}
            r = http.post("/v1/jobs", json=body)
            r.raise_for_status()
            ids.append(r.json()["job"])
        out = []
        for i in ids:
            r = http.get(f"/v1/jobs/{i}", params={"wait": "30s"})
            r.raise_for_status()
            assert r.json()["status"]["state"] == "done", r.text
            o = http.get(f"/v1/jobs/{i}/output")
            o.raise_for_status()
            out.append(o.content)
        return out


def sdk(url: str, token: str, bundle: str, names: list[str]) -> list[bytes]:
    with ComputeNetwork(url=url, token=token) as net:
        return net.gather(net.map(bundle, names), timeout=600)


def main() -> None:
    with testnet.start_network() as network:
        s = network.submitter
        with ComputeNetwork(url=s.url, token=s.token) as net:
            bundle = net.publish(testnet.guest("hello"), "hello").id
            net.gather(net.map(bundle, ["warm"] * 20))
        names = [f"n{i}" for i in range(JOBS)]
        want = [f"Hello, {n}!".encode() for n in names]
        times: dict[str, list[float]] = {"plain httpx": [], "SDK map + gather": []}
        for _ in range(2):
            for label, f in (("plain httpx", plain), ("SDK map + gather", sdk)):
                t = time.perf_counter()
                got = f(s.url, s.token, bundle, names)
                times[label].append(time.perf_counter() - t)
                assert got == want, label
        best = {k: min(v) for k, v in times.items()}
        for k, v in times.items():
            runs = ", ".join(f"{x:.2f} s" for x in v)
            print(f"{k}: {runs}; best {best[k] / JOBS * 1000:.2f} ms per job")
        ratio = best["SDK map + gather"] / best["plain httpx"]
        mean = statistics.mean(times["SDK map + gather"]) / statistics.mean(times["plain httpx"])
        print(f"{JOBS} jobs: SDK / plain = {ratio:.3f}x (best of 2), {mean:.3f}x (mean); target <= 1.1x")


if __name__ == "__main__":
    main()
