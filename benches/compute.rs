//! Compute overhead: the same kernels (`benches/kernels`) built natively and
//! as components, run in the sandbox three ways: as a node runs them (fuel
//! metered, the deadline kept at fuel yields), with fuel off (the deadline
//! then kept by epoch interruption), and bare (neither fuel nor a
//! deadline: what metering is measured against).
//!
//! Each wasm figure includes instantiation and the call; the kernels are
//! sized to run for milliseconds so that start-up is noise.
//!
//! Run: `cargo bench -p p2pc-benches --bench compute`

use std::time::Duration;

use criterion::Criterion;
use p2pc_benches::{geomean, percentile, sample};
use p2pc_sandbox::{Config, Deadlines, Limits, Program, Task, WasmExecutor};

const KERNELS: &[(&str, u64)] = &[("hash", 20_000_000), ("matmul", 160), ("fib", 27)];

fn main() {
    let rt = p2pc_benches::runtime();
    let bytes = p2pc_tests::guest_bytes("kernels-guest");
    let metered = WasmExecutor::new(Config::default()).expect("executor");
    let unmetered = WasmExecutor::new(Config {
        fuel_metering: false,
        ..Config::default()
    })
    .expect("executor");
    let bare = WasmExecutor::new(Config {
        fuel_metering: false,
        deadlines: Deadlines::Off,
        ..Config::default()
    })
    .expect("executor");
    // How a node kept deadlines before fuel yields: epochs with fuel.
    let before = WasmExecutor::new(Config {
        deadlines: Deadlines::Epoch,
        ..Config::default()
    })
    .expect("executor");
    let p_before = rt.block_on(before.load(&bytes)).expect("load");
    // Bare, and NaNs left as the CPU makes them: what determinism costs.
    let raw = WasmExecutor::new(Config {
        fuel_metering: false,
        deadlines: Deadlines::Off,
        nan_canonicalization: false,
        ..Config::default()
    })
    .expect("executor");
    let p_raw = rt.block_on(raw.load(&bytes)).expect("load");
    let p_metered = rt.block_on(metered.load(&bytes)).expect("load");
    let p_unmetered = rt.block_on(unmetered.load(&bytes)).expect("load");
    let p_bare = rt.block_on(bare.load(&bytes)).expect("load");

    let wasm = |exec: &WasmExecutor, program: &Program, name: &str, size: u64| {
        let input = format!("{name} {size}").into_bytes();
        let task = Task {
            limits: Limits {
                fuel: u64::MAX,
                timeout: Duration::from_secs(600),
                ..Limits::DEFAULT
            },
            ..Task::run(input)
        };
        let o = rt.block_on(exec.run(program, task));
        let out = o.result.expect("kernel ran");
        String::from_utf8(out)
            .expect("decimal")
            .parse::<u64>()
            .expect("checksum")
    };

    // Both builds must compute the same thing, or the comparison is void.
    for &(name, size) in KERNELS {
        let native = p2pc_kernels::run(name, size).expect("kernel");
        assert_eq!(wasm(&metered, &p_metered, name, size), native, "{name}");
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(name, size) in KERNELS {
        let mut g = c.benchmark_group(format!("compute/{name}"));
        g.bench_function("native", |b| {
            b.iter(|| p2pc_kernels::run(std::hint::black_box(name), size))
        });
        g.bench_function("wasm_fuel", |b| {
            b.iter(|| wasm(&metered, &p_metered, name, size))
        });
        g.bench_function("wasm_no_fuel", |b| {
            b.iter(|| wasm(&unmetered, &p_unmetered, name, size))
        });
        g.bench_function("wasm_bare", |b| b.iter(|| wasm(&bare, &p_bare, name, size)));
        g.bench_function("wasm_fuel_epoch", |b| {
            b.iter(|| wasm(&before, &p_before, name, size))
        });
        g.finish();
    }
    c.final_summary();

    // The ratio table, from medians of interleaved samples taken in this run.
    const N: usize = 15;
    let (mut fuel_ratios, mut nofuel_ratios, mut bare_ratios, mut costs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut before_ratios, mut before_costs) = (Vec::new(), Vec::new());
    println!("\ncompute overhead (median of {N}):");
    println!(
        "| kernel | native | fuel, deadline at fuel yields (shipped) | ratio | fuel, epoch deadline (before) | ratio | fuel off, epoch deadline | ratio | bare (neither) | ratio | metering cost, shipped / bare | before / bare |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &(name, size) in KERNELS {
        let mut n = sample(N, || {
            std::hint::black_box(p2pc_kernels::run(std::hint::black_box(name), size));
        });
        let mut f = sample(N, || {
            wasm(&metered, &p_metered, name, size);
        });
        let mut u = sample(N, || {
            wasm(&unmetered, &p_unmetered, name, size);
        });
        let mut b = sample(N, || {
            wasm(&bare, &p_bare, name, size);
        });
        let mut e = sample(N, || {
            wasm(&before, &p_before, name, size);
        });
        let (n, f, u, b, e) = (
            percentile(&mut n, 50.0),
            percentile(&mut f, 50.0),
            percentile(&mut u, 50.0),
            percentile(&mut b, 50.0),
            percentile(&mut e, 50.0),
        );
        let ratio = |d: Duration| d.as_secs_f64() / n.as_secs_f64();
        let (rf, ru, rb, re) = (ratio(f), ratio(u), ratio(b), ratio(e));
        let cost = f.as_secs_f64() / b.as_secs_f64();
        let before_cost = e.as_secs_f64() / b.as_secs_f64();
        fuel_ratios.push(rf);
        nofuel_ratios.push(ru);
        bare_ratios.push(rb);
        costs.push(cost);
        before_ratios.push(re);
        before_costs.push(before_cost);
        println!(
            "| {name} {size} | {n:.2?} | {f:.2?} | {rf:.2}x | {e:.2?} | {re:.2}x | {u:.2?} | {ru:.2}x | {b:.2?} | {rb:.2}x | {cost:.2}x | {before_cost:.2}x |"
        );
    }
    println!(
        "| geometric mean | | | {:.2}x | | {:.2}x | | {:.2}x | | {:.2}x | {:.2}x | {:.2}x |",
        geomean(&fuel_ratios),
        geomean(&before_ratios),
        geomean(&nofuel_ratios),
        geomean(&bare_ratios),
        geomean(&costs),
        geomean(&before_costs)
    );
    println!("\nbare, and without NaN canonicalisation (median of {N}):");
    println!("| kernel | bare | without NaN canonicalisation | ratio |");
    println!("|---|---|---|---|");
    for &(name, size) in KERNELS {
        let mut b = sample(N, || {
            wasm(&bare, &p_bare, name, size);
        });
        let mut r = sample(N, || {
            wasm(&raw, &p_raw, name, size);
        });
        let (b, r) = (percentile(&mut b, 50.0), percentile(&mut r, 50.0));
        println!(
            "| {name} {size} | {b:.2?} | {r:.2?} | {:.2}x |",
            b.as_secs_f64() / r.as_secs_f64()
        );
    }
}
