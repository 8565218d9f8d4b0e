"""Counts the words of several texts on a p2pc network with the Python SDK.

Publishes the ``wordcount`` example component as a bundle signed with the
node's key, maps it over the inputs (one job each, placed on the network's
workers and paid from the node's account), and prints each result and
what it cost.

    python examples/python/wordcount_map.py [--node DIR] [WASM]

``--node`` names the submitting node's directory (default: the one
``p2pctl`` uses); WASM defaults to the component ``cargo build --release
--target wasm32-wasip2 -p wordcount`` makes. ``scripts/demo.sh`` runs it on
its network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2pc import ComputeNetwork, P2pcError

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a rose is a rose is a rose",
    "to be or not to be that is the question",
    "it was the best of times it was the worst of times",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", help="the submitting node's directory")
    parser.add_argument(
        "wasm",
        nargs="?",
        default=ROOT / "target" / "wasm32-wasip2" / "release" / "wordcount.wasm",
        type=Path,
    )
    args = parser.parse_args()
    try:
        with ComputeNetwork(node=args.node) as net:
            bundle = net.publish(args.wasm, "wordcount", "1.0.0")
            print(f"published {bundle.name} {bundle.version} as {bundle.id[:16]}…")
            before = net.balance().available
            jobs = net.map(bundle, TEXTS, timeout=60)
            outputs = net.gather(jobs, timeout=120)
            for text, job, out in zip(TEXTS, jobs, outputs):
                top = out.decode().splitlines()[:3]
                st = job.status()
                print(f"\n{text!r}\n  on {st.worker}: {st.fuel_used:,} fuel, {st.cost} credits")
                for line in top:
                    count, word = line.split("\t")
                    print(f"  {count:>3} {word}")
            total = sum(j.cost for j in jobs)
            print(f"\n{len(jobs)} jobs cost {total} credits in all; {before:,} credits available before")
    except P2pcError as e:
        print(f"wordcount_map: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
