#!/usr/bin/env bash
# The p2pc demo: installs what is needed, builds p2pctl and every example
# job (with both cargo component build and cargo build --target
# wasm32-wasip2), then runs each example in the sandbox and prints its output
# and the fuel it used; stops a hostile job; makes a new job crate with
# p2pctl new; signs a bundle; and sends a job across a two-node network that
# also keeps a credit ledger.
#
# On a fresh 2-core machine it takes about half an hour, most of it
# building cargo-component (scripts/setup.sh) and p2pctl; run again, about
# two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

examples=(hello wordcount sha256 mandelbrot rot13)
pkgs=()
for e in "${examples[@]}"; do pkgs+=(-p "$e"); done

echo "==> building p2pctl"
cargo build -j2 -p p2pc-cli
echo "==> building the examples (and the hostile test job) with: cargo build --release --target wasm32-wasip2"
cargo build -j2 --release --target wasm32-wasip2 "${pkgs[@]}" -p hostile
echo "==> building the examples with: cargo component build --release"
cargo component build -j2 --release "${pkgs[@]}"

p2pctl=target/debug/p2pctl
echo "==> using p2pctl at $PWD/$p2pctl (to install one on your PATH: cargo install --locked --path host/cli)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name input-text [extra p2pctl args...]
  local name=$1 input=$2
  shift 2
  for dir in wasm32-wasip2 wasm32-wasip1; do
    local wasm=target/$dir/release/$name.wasm
    printf '\n--- %s (%s) ---\n' "$name" "$([ $dir = wasm32-wasip2 ] && echo 'cargo build --target wasm32-wasip2' || echo 'cargo component build')"
    # Output first, then p2pctl's summary, each on its own lines.
    printf '%s' "$input" | "$p2pctl" run "$wasm" --input - --output "$out/output" "$@" 2>"$out/summary"
    cat "$out/output"
    [ -z "$(tail -c1 "$out/output")" ] || echo
    cat "$out/summary"
  done
}

run hello "p2pc"
run wordcount "$(printf 'the quick brown fox\njumps over the lazy dog\nthe dog sleeps\n')" --shards 3
run sha256 "hello, p2pc"
run rot13 "Hello, p2pc!"
printf '\n--- mandelbrot (renders a 320x200 PGM) ---\n'
echo "320 200 400" | "$p2pctl" run target/wasm32-wasip2/release/mandelbrot.wasm --input - --output "$out/mandelbrot.pgm"
echo "wrote $(wc -c <"$out/mandelbrot.pgm") bytes of PGM; running it again gives the same bytes and fuel:"
for i in 1 2; do
  echo "320 200 400" | "$p2pctl" run target/wasm32-wasip2/release/mandelbrot.wasm --input - --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  output blake3", r["output_blake3"][:16], " fuel", format(r["fuel_used"], ","))'
done

hostile=target/wasm32-wasip2/release/hostile.wasm
printf '\n--- a hostile job (an endless loop) is stopped by its fuel limit: --fuel 10M ---\n'
printf loop | "$p2pctl" run "$hostile" --input - --fuel 10M || echo "(exit status $?, as expected)"
printf '\n--- the same loop given 1T fuel is stopped by its deadline: --timeout 1s ---\n'
printf loop | "$p2pctl" run "$hostile" --input - --fuel 1T --timeout 1s || echo "(exit status $?, as expected)"
printf '\n--- a hostile job that hoards memory is stopped at its limit: --memory 32MiB ---\n'
printf memory | "$p2pctl" run "$hostile" --input - --memory 32MiB || echo "(exit status $?, as expected)"

printf '\n--- p2pctl new: a fresh job crate (a WASI command that takes arguments), built and run ---\n'
"$p2pctl" new "$out/my-wc" --world command
(cd "$out/my-wc" && CARGO_TARGET_DIR="$out/my-wc-target" cargo build -q -j2 --release --target wasm32-wasip2)
echo "its arguments: -l -w (count lines and words)"
printf 'one two\nthree\n' | "$p2pctl" run "$out/my-wc-target/wasm32-wasip2/release/my-wc.wasm" --input - -- -l -w

printf '\n--- publish: a signed bundle, verified before it runs ---\n'
# A throwaway keystore and store, so the demo leaves nothing behind.
export P2PC_KEYSTORE="$out/keys" P2PC_DATA_DIR="$out/store" P2PC_PASSPHRASE=demo-passphrase
"$p2pctl" key new demo-publisher
"$p2pctl" bundle pack target/wasm32-wasip2/release/hello.wasm --name hello --version 1.0.0 \
  --key demo-publisher --sign --fuel 10000000 --output "$out/hello.p2pcb"
printf 'signed bundle' | "$p2pctl" run "$out/hello.p2pcb" --trust demo-publisher --input - --output "$out/output" 2>"$out/summary"
cat "$out/output"; echo; cat "$out/summary"
printf '\n--- a tampered bundle is refused ---\n'
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[-100]^=1; open(sys.argv[2],"wb").write(b)' \
  "$out/hello.p2pcb" "$out/tampered.p2pcb"
"$p2pctl" run "$out/tampered.p2pcb" || echo "(exit status $?, as expected)"

printf '\n--- the network: a submitter, a worker and an arbiter on this machine; jobs are paid ---\n'
nodes=()
stop_nodes() { for p in "${nodes[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'stop_nodes; rm -rf "$out"' EXIT
init_node() { # dir, then its init flags; prints the node's public key
  local dir=$1; shift
  "$p2pctl" node init --node "$dir" --no-mdns --insecure-no-passphrase --api-listen 127.0.0.1:0 --json "$@" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["public_key"])'
}
run_node() {
  local dir=$1
  "$p2pctl" node start --node "$dir" >"$dir.out" 2>"$dir.log" &
  nodes+=($!)
  for _ in $(seq 1 300); do grep -q '^ready' "$dir.out" 2>/dev/null && return; sleep 0.1; done
  echo "node in $dir did not start:" >&2; cat "$dir.log" >&2; exit 1
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# The arbiter co-signs refunds and confirmations; the worker charges 2
# credits per million fuel, bonds 10 credits per task and accepts that
# arbiter; the submitter runs nothing for others.
# (It charges like a worker but accepts no arbiter, so it is never chosen
# to run a paid task: it cannot arbitrate its own.)
arbiter_key=$(init_node "$out/arbiter" --listen /ip4/127.0.0.1/tcp/0 --arbiter --price 2)
worker_key=$(init_node "$out/worker" --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1 \
  --price 2 --collateral 10 --accept-arbiter "$arbiter_key")
worker2_key=$(init_node "$out/worker2" --listen /ip4/127.0.0.1/tcp/0 \
  --price 2 --collateral 10 --accept-arbiter "$arbiter_key")
submitter_key=$(init_node "$out/submitter" --listen /ip4/127.0.0.1/tcp/0 --price 0)
# One credit ledger: the submitter starts with 1,000,000 credits, the
# worker with 100 (for its collateral); a settlement may be disputed for 2 s.
"$p2pctl" ledger genesis --network demo --mint "$submitter_key=1000000" --mint "$worker_key=100" \
  --mint "$worker2_key=100" \
  --challenge-window 2s -o "$out/genesis.toml"
for n in worker worker2 arbiter submitter; do
  "$p2pctl" ledger join --node "$out/$n" "$out/genesis.toml" >/dev/null
done
run_node "$out/worker"
worker_addr=$(grep '^listening .*/tcp/' "$out/worker.out" | head -1 | cut -d' ' -f2)
worker_id=$(grep '^peer_id' "$out/worker.out" | cut -d' ' -f2)
P2PC_BOOTSTRAP="$worker_addr" run_node "$out/arbiter"
P2PC_BOOTSTRAP="$worker_addr" run_node "$out/worker2"
P2PC_BOOTSTRAP="$worker_addr" run_node "$out/submitter"
echo "worker $worker_id"
# A paid job needs the arbiter's advert: wait until the submitter has heard
# both the worker's and the arbiter's.
for _ in $(seq 1 300); do
  [ "$("$p2pctl" node status --node "$out/submitter" --json | json_field workers_known)" -ge 3 ] && break
  sleep 0.1
done
printf 'network' >"$out/name"
"$p2pctl" job submit "$out/hello.p2pcb" --input "$out/name" --to "$worker_id" --wait --node "$out/submitter"
echo
hello_job=$("$p2pctl" job list --limit 1 --json --node "$out/submitter" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
"$p2pctl" job status "$hello_job" --node "$out/submitter"
printf '\n--- over the network, a command job with arguments: my-wc -- -w (count words) ---\n'
"$p2pctl" bundle pack "$out/my-wc-target/wasm32-wasip2/release/my-wc.wasm" --name my-wc --version 0.1.0 \
  --key demo-publisher --sign --output "$out/my-wc.p2pcb"
printf 'the quick brown fox\njumps over the lazy dog\n' >"$out/words"
"$p2pctl" job submit "$out/my-wc.p2pcb" --input "$out/words" --to "$worker_id" --wait --node "$out/submitter" -- -w

printf '\n--- a paid map-reduce job in two shards, on both workers: wordcount --shards 2 ---\n'
"$p2pctl" bundle pack target/wasm32-wasip2/release/wordcount.wasm --name wordcount --version 1.0.0 \
  --key demo-publisher --sign --output "$out/wordcount.p2pcb"
printf 'the quick brown fox\njumps over the lazy dog\nthe dog sleeps\nthe fox runs\n' >"$out/text"
"$p2pctl" job submit "$out/wordcount.p2pcb" --input "$out/text" --shards 2 --wait --node "$out/submitter"
wc_job=$("$p2pctl" job list --limit 1 --json --node "$out/submitter" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
"$p2pctl" job status "$wc_job" --node "$out/submitter"

printf '\n--- the same from Python: the SDK maps wordcount over four texts (examples/python/wordcount_map.py) ---\n'
.venv/bin/python examples/python/wordcount_map.py --node "$out/submitter"

printf '\n--- the ledger: each task paid its worker for the fuel it used, final once the 2 s window closed ---\n'
for _ in $(seq 1 200); do
  [ "$("$p2pctl" ledger balance --node "$out/worker" --json | json_field pending)" = 0 ] &&
    [ "$("$p2pctl" ledger balance --node "$out/worker2" --json | json_field pending)" = 0 ] &&
    [ "$("$p2pctl" ledger holds --node "$out/worker" --json | python3 -c 'import json, sys; print(all(h["final"] for h in json.load(sys.stdin)["holds"]))')" = True ] && break
  sleep 0.1
done
echo "the worker, on its own replica:"
"$p2pctl" ledger balance --node "$out/worker"
echo "the second worker:"
"$p2pctl" ledger balance --node "$out/worker2"
echo "the submitter, on the arbiter's replica:"
"$p2pctl" ledger balance --node "$out/arbiter" "$submitter_key"
"$p2pctl" ledger holds --node "$out/worker"
"$p2pctl" ledger verify --node "$out/worker"
printf "\n--- the submitter's peers (p2pctl node peers) ---\n"
"$p2pctl" node peers --node "$out/submitter"
printf "\n--- the submitter's dashboard (p2pctl node dashboard) ---\n"
"$p2pctl" node dashboard --node "$out/submitter"
if [ "${P2PC_DEMO_KEEP:-}" = 1 ]; then
  echo "open that link in a browser on this machine; the nodes run until Ctrl-C"
  wait
else
  echo "(the nodes stop with the demo; run it with P2PC_DEMO_KEEP=1 to keep them, and the page, up until Ctrl-C)"
fi
