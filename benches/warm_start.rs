//! Warm task start: instantiate and call a trivial, already-compiled job.
//!
//! Measures `WasmExecutor::run` on a loaded program (a fresh store, WASI
//! context, limiter, fuel, deadline, pooled instance, call, teardown) and,
//! as the baseline in the same run, bare wasmtime doing the least it can for
//! the same component: default WASI context, pooled instance, call.
//!
//! Run: `cargo bench -p p2pc-benches --bench warm_start`

use std::time::Duration;

use criterion::Criterion;
use p2pc_benches::{percentile, sample};
use p2pc_sandbox::{Config, Task, WasmExecutor};
use wasmtime::component::{Component, Linker, Val};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct Bare {
    wasi: WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn main() {
    let rt = p2pc_benches::runtime();
    let bytes = p2pc_tests::guest_bytes("kernels-guest");

    // p2pc's path.
    let exec = WasmExecutor::new(Config::default()).expect("executor");
    let program = rt.block_on(exec.load(&bytes)).expect("load");
    let ours = || {
        let o = rt.block_on(exec.run(&program, Task::run(Vec::new())));
        assert!(o.result.is_ok());
    };

    // The baseline: bare wasmtime, pooling allocator, no limits.
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).expect("engine");
    let component = Component::new(&engine, &bytes).expect("compile");
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    // The trivial call never reaches the p2pc host interface.
    linker
        .define_unknown_imports_as_traps(&component)
        .expect("stub imports");
    let pre = linker.instantiate_pre(&component).expect("link");
    let bare = || {
        rt.block_on(async {
            let mut store = Store::new(
                &engine,
                Bare {
                    wasi: WasiCtx::builder().build(),
                    table: Default::default(),
                },
            );
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            let run = instance.get_func(&mut store, "run").expect("run export");
            let mut results = [Val::Bool(false)];
            run.call_async(&mut store, &[Val::List(Vec::new())], &mut results)
                .await
                .expect("call");
        })
    };

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut group = c.benchmark_group("warm_start");
    group.bench_function("p2pc_sandbox", |b| b.iter(ours));
    group.bench_function("bare_wasmtime", |b| b.iter(bare));
    group.finish();
    c.final_summary();

    // Criterion reports means and medians; tails need every sample.
    const N: usize = 20_000;
    let mut ours_s = sample(N, ours);
    let mut bare_s = sample(N, bare);
    let (o50, o99) = (percentile(&mut ours_s, 50.0), percentile(&mut ours_s, 99.0));
    let (b50, b99) = (percentile(&mut bare_s, 50.0), percentile(&mut bare_s, 99.0));
    println!("\nwarm start over {N} calls each:");
    println!("| path | p50 | p99 |");
    println!("|---|---|---|");
    println!("| p2pc sandbox | {o50:.1?} | {o99:.1?} |");
    println!("| bare wasmtime (baseline) | {b50:.1?} | {b99:.1?} |");
    println!(
        "| ratio p2pc / bare | {:.2}x | {:.2}x |",
        o50.as_secs_f64() / b50.as_secs_f64(),
        o99.as_secs_f64() / b99.as_secs_f64()
    );
}
