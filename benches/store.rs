//! Blob throughput: putting and getting a 1 GiB blob in the store, against
//! writing and reading the same bytes as a plain file, and the verified
//! read against BLAKE3 itself hashing the same bytes in memory on every
//! core (`Hasher::update_rayon`), in the same run.
//!
//! Both writes end durable (the store syncs its journal; the file is
//! fsynced), both reads stream through a 1 MiB buffer into a sink, and the
//! store's read verifies every chunk's BLAKE3. Each put goes to a fresh
//! store, so deduplication cannot flatter it.
//!
//! Run: `cargo bench -p p2pc-benches --bench store`

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use p2pc_benches::percentile;
use p2pc_store::Store;

const LEN: usize = 1 << 30;

fn drain(mut r: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match r.read(&mut buf).expect("read") {
            0 => return n,
            k => n += k as u64,
        }
    }
}

fn main() {
    let bytes = p2pc_tests::pseudo_random(LEN, 0);
    let dir =
        tempfile::tempdir_in(std::env::var_os("P2PC_BENCH_DIR").unwrap_or_else(|| ".".into()))
            .expect("temp dir");

    // One blob and one file to read back, written once.
    let store = Store::open(dir.path().join("read-store")).expect("store");
    let id = store.put_bytes(&bytes).expect("put").id;
    let file_path = dir.path().join("read-file");
    std::fs::write(&file_path, &bytes).expect("write file");
    // Let the set-up's gigabytes reach the disk first, so their writeback
    // does not throttle whichever write is measured first.
    std::fs::File::open(&file_path)
        .and_then(|f| f.sync_all())
        .expect("sync file");

    let timings: std::cell::RefCell<std::collections::BTreeMap<&str, Vec<Duration>>> =
        Default::default();
    let record = |name, d| timings.borrow_mut().entry(name).or_default().push(d);

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    let mut g = c.benchmark_group("blob_1GiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("store_put", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let path = dir.path().join(format!("put-{i}"));
                let s = Store::open(&path).expect("store");
                let t = Instant::now();
                s.put(&bytes[..]).expect("put");
                let d = t.elapsed();
                record("store_put", d);
                total += d;
                drop(s);
                std::fs::remove_dir_all(&path).expect("clean");
            }
            total
        })
    });
    g.bench_function("file_write", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let path = dir.path().join(format!("write-{i}"));
                let t = Instant::now();
                let mut f = std::fs::File::create(&path).expect("create");
                f.write_all(&bytes).expect("write");
                f.sync_all().expect("fsync");
                let d = t.elapsed();
                record("file_write", d);
                total += d;
                std::fs::remove_file(&path).expect("clean");
            }
            total
        })
    });
    g.bench_function("store_get", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let t1 = Instant::now();
                assert_eq!(drain(store.get_ahead(&id).expect("get")), LEN as u64);
                record("store_get", t1.elapsed());
            }
            t.elapsed()
        })
    });
    g.bench_function("file_read", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let t1 = Instant::now();
                assert_eq!(
                    drain(std::fs::File::open(&file_path).expect("open")),
                    LEN as u64
                );
                record("file_read", t1.elapsed());
            }
            t.elapsed()
        })
    });
    g.bench_function("blake3_all_cores", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let t1 = Instant::now();
                std::hint::black_box(blake3::Hasher::new().update_rayon(&bytes).finalize());
                record("blake3_mt", t1.elapsed());
            }
            t.elapsed()
        })
    });
    g.bench_function("blake3_one_core", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let t1 = Instant::now();
                std::hint::black_box(blake3::Hasher::new().update(&bytes).finalize());
                record("blake3_1", t1.elapsed());
            }
            t.elapsed()
        })
    });
    g.finish();
    c.final_summary();

    let mut t = timings.into_inner();
    let mut median = |k| percentile(t.get_mut(k).expect("measured"), 50.0);
    let rate = |d: Duration| LEN as f64 / d.as_secs_f64() / (1 << 20) as f64;
    let (put, write, get, read) = (
        median("store_put"),
        median("file_write"),
        median("store_get"),
        median("file_read"),
    );
    println!("\nblob of 1 GiB, medians:");
    println!("| operation | store | plain file | store / file |");
    println!("|---|---|---|---|");
    println!(
        "| write (durable) | {:.0} MiB/s | {:.0} MiB/s | {:.2}x |",
        rate(put),
        rate(write),
        rate(put) / rate(write)
    );
    println!(
        "| read (verified) | {:.0} MiB/s | {:.0} MiB/s | {:.2}x |",
        rate(get),
        rate(read),
        rate(get) / rate(read)
    );
    let (mt, one) = (median("blake3_mt"), median("blake3_1"));
    println!(
        "\nverified read against BLAKE3 over the same bytes in memory: all cores {:.0} MiB/s \
         (read {:.2}x of it), one core {:.0} MiB/s (read {:.2}x of it)",
        rate(mt),
        rate(get) / rate(mt),
        rate(one),
        rate(get) / rate(one)
    );
}
