//! Sealing and opening a 256 MiB input (`P2PC_BENCH_MIB`) in memory,
//! streamed through `SealingReader` and `OpeningReader` as the node does,
//! against BLAKE3 hashing the same bytes on one core, in the same run.
//! Sealing is ChaCha20-Poly1305 over every byte, which costs more than a
//! BLAKE3 pass; the ratio says how much more.
//!
//! Run: `cargo bench -p p2pc-benches --bench seal`

use std::io::Read;
use std::time::{Duration, Instant};

use p2pc_crypto::{ContentKey, OpeningReader, SealingReader};

fn best(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = std::hint::black_box(f());
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib: usize = std::env::var("P2PC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 131 % 251) as u8).collect();
    let key = ContentKey::generate();
    let mut sealed = Vec::with_capacity(data.len() + (data.len() >> 10));
    SealingReader::new(data.as_slice(), &key)
        .read_to_end(&mut sealed)
        .expect("seal");
    let mut buf = vec![0u8; 1 << 20];
    // Read a reader to its end through a 1 MiB buffer, as the store would.
    let mut drain = |r: &mut dyn Read| {
        let mut n = 0;
        loop {
            match r.read(&mut buf).expect("read") {
                0 => return n,
                k => n += k,
            }
        }
    };
    let runs = 5;
    let (hash, _) = best(runs, || blake3::hash(&data).as_bytes()[0] as usize);
    let (seal, n) = best(runs, || {
        drain(&mut SealingReader::new(data.as_slice(), &key))
    });
    assert_eq!(n, sealed.len());
    let (open, n) = best(runs, || {
        drain(&mut OpeningReader::new(sealed.as_slice(), &key))
    });
    assert_eq!(n, data.len());
    let rate = |d: Duration| (mib as f64) / d.as_secs_f64();
    println!(
        "{mib} MiB, best of {runs}: BLAKE3 {:.0} MiB/s; seal {:.0} MiB/s ({:.2}x BLAKE3's time); \
         open {:.0} MiB/s ({:.2}x)",
        rate(hash),
        rate(seal),
        seal.as_secs_f64() / hash.as_secs_f64(),
        rate(open),
        open.as_secs_f64() / hash.as_secs_f64(),
    );
}
