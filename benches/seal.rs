//! Sealing and opening a 256 MiB input (`P2PC_BENCH_MIB`) in memory,
//! streamed through `SealingReader` and `OpeningReader` as the node does,
//! against BLAKE3 hashing the same bytes on one core, in the same run.
//! Sealing is ChaCha20-Poly1305 over every byte, which costs more than a
//! BLAKE3 pass; the ratio says how much more.
//!
//! Run: `cargo bench -p p2pc-benches --bench seal`

use std::io::Read;
use std::time::{Duration, Instant};

use p2pc_crypto::{ContentKey, OpeningReader, SealKey, SealingReader, wrap};

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
    // What a tiny sealed task adds: a wrap for the worker and one for
    // the submitter (each an X25519 key pair and an agreement), an unwrap
    // on each side, and a seal and an open of a few bytes on each side.
    let reader = SealKey::generate();
    let blob = [7u8; 32];
    let n = 2000;
    let t = Instant::now();
    let mut wraps = Vec::with_capacity(n);
    for _ in 0..n {
        wraps.push(wrap(&reader.public(), &key, None, &blob, b"binding"));
    }
    let wrap_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for w in &wraps {
        std::hint::black_box(reader.unwrap(w, &blob, b"binding").expect("unwrap"));
    }
    let unwrap_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        let k = ContentKey::generate();
        let s = p2pc_crypto::seal::seal_bytes(&k, b"Hello, bench!");
        std::hint::black_box(p2pc_crypto::seal::open_bytes(&k, &s).expect("open"));
    }
    let small_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "per key: wrap {wrap_us:.1} us, unwrap {unwrap_us:.1} us; a 13-byte seal and open {small_us:.1} us"
    );
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
