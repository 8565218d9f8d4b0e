"""A real three-node paid network: an arbiter, a worker and a submitter,
started from the built ``p2pctl`` on loopback, sharing a genesis file that
gives the submitter 1,000,000 credits. The SDK's tests, its bench and the
dashboard's browser tests all run against it."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GUESTS = ROOT / "target" / "guests" / "wasm32-wasip2" / "release"
#: Every wait in these tests is bounded by this.
WAIT = 60.0


def p2pctl() -> Path:
    exe = Path(os.environ.get("P2PC_P2PCTL", ROOT / "target" / "debug" / "p2pctl"))
    if not exe.exists():
        subprocess.run(["cargo", "build", "-j2", "-p", "p2pc-cli"], cwd=ROOT, check=True)
    return exe


def guest(name: str) -> Path:
    """A guest component built by the Rust tests' build script (or built
    here if they have not run)."""
    path = GUESTS / f"{name}.wasm"
    if not path.exists():
        subprocess.run(
            [
                "cargo", "build", "-j2", "--release", "--target", "wasm32-wasip2",
                "--target-dir", str(ROOT / "target" / "guests"), "-p", name,
            ],
            cwd=ROOT,
            check=True,
        )
    return path


def run(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [str(p2pctl()), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=WAIT,
    )
    if out.returncode != 0:
        raise AssertionError(f"p2pctl {' '.join(args)} failed: {out.stderr}")
    return out.stdout


@dataclass
class Node:
    dir: Path
    process: subprocess.Popen[str] | None = None
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def public_key(self) -> str:
        out = run("key", "show", "node", "--json", env={"P2PC_KEYSTORE": str(self.dir / "keys")})
        return str(json.loads(out)["public_key"])

    @property
    def token(self) -> str:
        return (self.dir / "api.token").read_text().strip()

    def start(self, bootstrap: str | None = None) -> None:
        env = {**os.environ}
        if bootstrap:
            env["P2PC_BOOTSTRAP"] = bootstrap
        log = open(f"{self.dir}.log", "w")
        self.process = subprocess.Popen(
            [str(p2pctl()), "node", "start", "--node", str(self.dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.dir} did not report ready within {WAIT} s")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line.startswith("peer_id "):
                self.peer_id = line.removeprefix("peer_id ")
            elif line.startswith("listening "):
                self.addrs.append(line.removeprefix("listening "))
            elif line.startswith("api "):
                self.url = line.removeprefix("api ")
            elif line == "ready":
                return

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WAIT)


@dataclass
class Network:
    arbiter: Node
    worker: Node
    submitter: Node
    root: Path


def init(root: Path, name: str, *extra: str) -> Node:
    dir = root / name
    run(
        "node", "init", "--node", str(dir), "--no-mdns", "--insecure-no-passphrase",
        "--api-listen", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", *extra,
    )
    return Node(dir)


@contextmanager
def start_network() -> Iterator[Network]:
    """Starts the three nodes, waits until the submitter has heard both
    offers, and stops them all at the end."""
    root = Path(tempfile.mkdtemp(prefix="p2pc-py-"))
    nodes: list[Node] = []
    try:
        arbiter = init(root, "arbiter", "--arbiter", "--price", "0")
        worker = init(
            root, "worker", "--price", "3", "--collateral", "5", "--accept-arbiter", arbiter.public_key
        )
        submitter = init(root, "submitter", "--price", "0")
        genesis = root / "genesis.toml"
        run(
            "ledger", "genesis", "--network", "python-sdk",
            "--mint", f"{submitter.public_key}=1000000",
            "--mint", f"{worker.public_key}=100",
            "--challenge-window", "1s", "-o", str(genesis),
        )
        for n in (arbiter, worker, submitter):
            run("ledger", "join", "--node", str(n.dir), str(genesis))
        arbiter.start()
        nodes.append(arbiter)
        boot = f"{arbiter.addrs[0]}/p2p/{arbiter.peer_id}"
        for n in (worker, submitter):
            n.start(boot)
            nodes.append(n)
        # The submitter needs the worker's and the arbiter's offers.
        deadline = time.monotonic() + WAIT
        while True:
            status = json.loads(run("--json", "node", "status", "--node", str(submitter.dir)))
            if status["workers_known"] >= 2:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"offers heard: {status['workers_known']}")
            time.sleep(0.1)
        yield Network(arbiter, worker, submitter, root)
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(root, ignore_errors=True)

