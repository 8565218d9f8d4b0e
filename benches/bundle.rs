//! Bundle verification for a 5 MiB component: signature over the manifest
//! plus BLAKE3 of the component, against BLAKE3 of the same 5 MiB alone
//! (the part no verifier can skip), in the same run.
//!
//! Run: `cargo bench -p p2pc-benches --bench bundle`

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use p2pc_benches::{percentile, sample};
use p2pc_crypto::{BundleFile, Manifest, SecretKey, TrustPolicy};

fn main() {
    let key = SecretKey::from_seed(&[1; 32]);
    let component: Vec<u8> = (0..5u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let manifest = Manifest {
        name: "bench".into(),
        version: "1.0.0".into(),
        world: "p2pc:job/job".into(),
        publisher: key.public().to_bytes().to_vec(),
        ..Manifest::default()
    };
    let mut file = BundleFile::pack(manifest, component.clone());
    file.sign(&key).expect("sign");
    let bytes = file.to_bytes();
    // A bundle read from a file arrives as an owned buffer, which
    // `from_vec` verifies in place; `from_bytes` borrows and copies once.
    let verify_owned = |owned: Vec<u8>| {
        BundleFile::from_vec(owned)
            .expect("parse")
            .verify(&TrustPolicy::Any, 1_800_000_000)
            .expect("valid");
    };
    let verify_borrowed = || {
        BundleFile::from_bytes(&bytes)
            .expect("parse")
            .verify(&TrustPolicy::Any, 1_800_000_000)
            .expect("valid");
    };
    let hash = || {
        std::hint::black_box(blake3::hash(std::hint::black_box(&component)));
    };

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("bundle_5MiB");
    g.bench_function("verify_owned", |b| {
        b.iter_batched(|| bytes.clone(), verify_owned, BatchSize::LargeInput)
    });
    g.bench_function("verify_borrowed", |b| b.iter(verify_borrowed));
    g.bench_function("blake3_only", |b| b.iter(hash));
    g.finish();
    c.final_summary();

    let mut owned: Vec<Duration> = (0..200)
        .map(|_| {
            let copy = bytes.clone();
            let t = Instant::now();
            verify_owned(copy);
            t.elapsed()
        })
        .collect();
    let (mut v, mut h) = (sample(200, verify_borrowed), sample(200, hash));
    let (o50, v50, h50) = (
        percentile(&mut owned, 50.0),
        percentile(&mut v, 50.0),
        percentile(&mut h, 50.0),
    );
    println!("\nbundle of a 5 MiB component, median of 200:");
    println!("| step | time | ratio to BLAKE3 alone |");
    println!("|---|---|---|");
    println!(
        "| parse + verify an owned buffer (a file just read) | {o50:.2?} | {:.2}x |",
        o50.as_secs_f64() / h50.as_secs_f64()
    );
    println!(
        "| parse + verify a borrowed slice (one copy) | {v50:.2?} | {:.2}x |",
        v50.as_secs_f64() / h50.as_secs_f64()
    );
    println!("| BLAKE3 of the component alone (baseline) | {h50:.2?} | 1.00x |");
}
