//! Determinism: the same job and input give byte-identical output and
//! identical fuel, run twice on one engine and once each on two engines.

use p2pc_sandbox::{Config, Mode, Task, WasmExecutor};

use crate::support::{block_on, executor, ok, run_task};

/// Jobs whose output would differ between runs or machines if the sandbox
/// leaked host clocks, randomness or NaN bit patterns.
const CASES: &[(&str, &[u8])] = &[
    ("mandelbrot", b"96 64 300"),
    ("sha256", b"determinism"),
    ("hostile", b"entropy"),
    ("hostile", b"clock"),
    ("hostile", b"float"),
    ("hostile-cmd", b"env"),
];

#[test]
fn same_job_same_input_same_output_and_fuel_on_one_and_two_engines() {
    let first = executor();
    // A second engine with its own cache: nothing shared but the bytes.
    let second = WasmExecutor::new(Config::default()).expect("executor");
    block_on(async {
        for (name, input) in CASES {
            let task = || Task::run(input.to_vec());
            let a = run_task(&first, name, task()).await;
            let b = run_task(&first, name, task()).await;
            let c = run_task(&second, name, task()).await;
            for other in [&b, &c] {
                assert_eq!(ok(&a), ok(other), "{name}: output differs");
                assert_eq!(
                    a.usage.fuel_used, other.usage.fuel_used,
                    "{name}: fuel differs"
                );
                assert_eq!(
                    a.usage.peak_memory, other.usage.peak_memory,
                    "{name}: memory differs"
                );
            }
        }
    });
}

#[test]
fn deterministic_mode_hides_the_host_clock_and_environment() {
    let exec = executor();
    block_on(async {
        let o = run_task(&exec, "hostile", Task::run(b"clock".to_vec())).await;
        // 2000-01-01T00:00:00Z, and the first monotonic reading is one step.
        assert_eq!(ok(&o), b"946684800 1000");
        let o = run_task(&exec, "hostile-cmd", Task::run(b"env".to_vec())).await;
        assert_eq!(ok(&o), b"", "no environment variables");
    });
}

#[test]
fn the_seed_decides_the_randomness() {
    let exec = executor();
    block_on(async {
        let with_seed = |seed: u8| Task {
            mode: Mode::Deterministic { seed: [seed; 32] },
            ..Task::run(b"entropy".to_vec())
        };
        let a = run_task(&exec, "hostile", with_seed(1)).await;
        let b = run_task(&exec, "hostile", with_seed(1)).await;
        let c = run_task(&exec, "hostile", with_seed(2)).await;
        assert_eq!(ok(&a), ok(&b));
        assert_ne!(ok(&a), ok(&c), "another seed gives other random numbers");

        // Nondeterministic mode draws from the OS; two 64-bit draws collide
        // with probability 2^-64.
        let nd = || Task {
            mode: Mode::Nondeterministic,
            ..Task::run(b"entropy".to_vec())
        };
        let x = run_task(&exec, "hostile", nd()).await;
        let y = run_task(&exec, "hostile", nd()).await;
        assert_ne!(ok(&x), ok(&y));
    });
}

#[test]
fn nan_results_are_canonical() {
    let exec = executor();
    block_on(async {
        let o = run_task(&exec, "hostile", Task::run(b"float".to_vec())).await;
        let bits = u32::from_le_bytes(ok(&o).try_into().expect("4 bytes"));
        // The canonical f32 NaN; x86 would produce 0xffc00000 for 0/0 * -1.
        assert_eq!(bits, 0x7fc0_0000, "got {bits:#x}");
    });
}
