//! A 256 MiB sealed input through a WASI command's stdin, between two real
//! `p2pctl node` processes: the input is uploaded, sealed, fetched and
//! opened as a stream, so neither node's peak memory comes near its size.

use std::io::Write;

use crate::network::{init, start};
use crate::{Env, text};

const SIZE: usize = 256 << 20;

/// The peak resident memory of process `pid`, from `/proc`.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[test]
fn a_256_mib_sealed_input_streams_through_a_command_in_bounded_memory() {
    let env = Env::new();
    let worker_dir = init(&env, "worker", &["/ip4/127.0.0.1/tcp/0"], &[]);
    let worker = start(&env, &worker_dir);
    let owner_dir = init(
        &env,
        "owner",
        &["/ip4/127.0.0.1/tcp/0"],
        &[worker.addrs[0].clone()],
    );
    let owner = start(&env, &owner_dir);

    // The input, written a piece at a time; its FNV-1a is what the command
    // prints.
    let path = env.path("big.in");
    let (mut hash, mut state) = (0xcbf2_9ce4_8422_2325u64, 0x9e37_79b9_7f4a_7c15u64);
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut piece = vec![0u8; 1 << 20];
        for _ in 0..SIZE / piece.len() {
            for b in piece.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
            file.write_all(&piece).expect("write");
        }
        file.flush().expect("flush");
    }
    let file = p2pc_testkit::bundle(
        &p2pc_crypto::SecretKey::generate(),
        "count",
        p2pc_tests::guest_bytes("hostile-cmd"),
        p2pc_crypto::RequestedLimits {
            fuel: 50_000_000_000,
            timeout_ms: 300_000,
            ..Default::default()
        },
    );
    std::fs::write(env.path("count.p2pcb"), file).expect("write bundle");
    let (bundle, input) = (
        env.path("count.p2pcb").display().to_string(),
        path.display().to_string(),
    );
    let base = (peak_rss(worker.pid()), peak_rss(owner.pid()));
    let out = env.run(
        &[
            "job",
            "submit",
            &bundle,
            "--input",
            &input,
            "--seal",
            "--to",
            &worker.peer_id,
            "--wait",
            "--timeout",
            "5m",
            "--node",
            &owner.dir,
            "--",
            "count",
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{SIZE} {hash:016x}\n"));
    let status = env.run(&["job", "list", "--node", &owner.dir, "--json"], b"", None);
    let jobs: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(jobs[0]["sealed"], true, "{jobs}");

    let (worker_peak, owner_peak) = (peak_rss(worker.pid()), peak_rss(owner.pid()));
    eprintln!(
        "peak RSS for a {} MiB sealed input: worker {} MiB (idle {} MiB), owner {} MiB (idle {} MiB)",
        SIZE >> 20,
        worker_peak >> 20,
        base.0 >> 20,
        owner_peak >> 20,
        base.1 >> 20
    );
    for (who, peak) in [("worker", worker_peak), ("owner", owner_peak)] {
        assert!(
            peak < (SIZE / 2) as u64,
            "the {who} node peaked at {} MiB for a {} MiB input",
            peak >> 20,
            SIZE >> 20
        );
    }
}
