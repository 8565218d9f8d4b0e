//! Hostile jobs end with their typed error, within their limit, and the
//! same executor serves the next task normally afterwards.

use std::time::Duration;

use p2pc_sandbox::{ByteSize, Limits, Task, TaskError};

use crate::support::{block_on, err, executor, ok, run, run_task};

fn limits() -> Limits {
    Limits {
        fuel: 2_000_000_000,
        memory: ByteSize::mib(64),
        timeout: Duration::from_secs(5),
        output: ByteSize::mib(1),
        ..Limits::DEFAULT
    }
}

fn task(input: &str) -> Task {
    Task {
        limits: limits(),
        ..Task::run(input.as_bytes().to_vec())
    }
}

/// Whether an ending is the one a case expects.
type Expect = fn(&TaskError) -> bool;

#[test]
fn each_hostile_job_ends_with_its_typed_error_and_the_host_keeps_serving() {
    let exec = executor();
    block_on(async {
        let cases: &[(&str, &str, Expect)] = &[
            ("hostile", "loop", |e| {
                matches!(
                    e,
                    TaskError::OutOfFuel {
                        limit: 2_000_000_000
                    }
                )
            }),
            ("hostile", "memory", |e| {
                matches!(e, TaskError::MemoryLimit { .. })
            }),
            ("hostile", "recursion", |e| {
                matches!(
                    e,
                    TaskError::StackOverflow {
                        in_memory: false,
                        ..
                    }
                )
            }),
            // Its own stack in linear memory runs out long before wasm's.
            ("hostile", "own-stack", |e| {
                matches!(e, TaskError::StackOverflow { in_memory: true, function }
                    if function.as_deref().is_some_and(|f| f.contains("deep")))
                    && e.to_string().contains("its own stack")
            }),
            // A real stray access is still named as one.
            (
                "hostile",
                "stray",
                |e| matches!(e, TaskError::Trap { message } if message.contains("out of bounds memory access")),
            ),
            ("hostile", "emit-flood", |e| {
                matches!(e, TaskError::OutputTooLarge { .. })
            }),
            ("hostile", "return-flood", |e| {
                matches!(e, TaskError::OutputTooLarge { .. })
            }),
            (
                "hostile",
                "panic",
                |e| matches!(e, TaskError::Trap { message } if message.contains("panicked on purpose")),
            ),
            ("hostile-cmd", "flood", |e| {
                matches!(e, TaskError::OutputTooLarge { .. })
            }),
            (
                "hostile-cmd",
                "exit 3",
                |e| matches!(e, TaskError::GuestError { message } if message.contains("exit status")),
            ),
        ];
        for (guest, input, expected) in cases {
            let o = run_task(&exec, guest, task(input)).await;
            let e = err(&o);
            assert!(expected(e), "{guest} {input}: unexpected ending {e:?}");
            let limits = limits();
            assert!(
                o.usage.fuel_used <= limits.fuel,
                "{input}: fuel within limit"
            );
            assert!(
                o.usage.peak_memory <= limits.memory.bytes(),
                "{input}: memory within limit"
            );
            assert!(
                o.stderr.len() as u64 <= limits.stderr.bytes(),
                "{input}: stderr capped"
            );

            // The host is unharmed: the next task on the same executor works.
            let next = run(&exec, "hello", b"again").await;
            assert_eq!(ok(&next), b"Hello, again!", "after {guest} {input}");
        }
    });
}

#[test]
fn out_of_fuel_bills_exactly_the_limit() {
    let exec = executor();
    block_on(async {
        let t = Task {
            limits: Limits {
                fuel: 1_000_000,
                ..limits()
            },
            ..task("loop")
        };
        let o = run_task(&exec, "hostile", t).await;
        assert_eq!(err(&o), &TaskError::OutOfFuel { limit: 1_000_000 });
        assert_eq!(o.usage.fuel_used, 1_000_000);
    });
}

#[test]
fn a_compute_loop_is_stopped_at_its_deadline() {
    let exec = executor();
    block_on(async {
        let t = Task {
            limits: Limits {
                fuel: u64::MAX,
                timeout: Duration::from_millis(300),
                ..limits()
            },
            ..task("loop")
        };
        let o = run_task(&exec, "hostile", t).await;
        assert_eq!(err(&o), &TaskError::Deadline { timeout_ms: 300 });
        assert!(o.usage.wall_time >= Duration::from_millis(300));
    });
}

#[test]
fn a_job_spinning_on_host_calls_or_compute_is_stopped_on_time() {
    let exec = executor();
    block_on(async {
        for job in ["host-spin", "loop"] {
            let t = Task {
                limits: Limits {
                    fuel: u64::MAX,
                    timeout: Duration::from_millis(300),
                    ..limits()
                },
                ..task(job)
            };
            let o = run_task(&exec, "hostile", t).await;
            assert_eq!(err(&o), &TaskError::Deadline { timeout_ms: 300 }, "{job}");
            assert!(o.usage.wall_time >= Duration::from_millis(300), "{job}");
            // On time: a deadline is kept at fuel yields (every 10^6 fuel),
            // so it is late by about a millisecond; the bound leaves room
            // for a loaded machine, not for a missed deadline.
            assert!(
                o.usage.wall_time < Duration::from_millis(2300),
                "{job} ran {:?} past a 300 ms deadline",
                o.usage.wall_time
            );
        }
    });
}

#[test]
fn the_fuel_yield_interval_never_changes_fuel_or_output() {
    block_on(async {
        let mut outcomes = Vec::new();
        for interval in [1_000, 1_000_000, u64::MAX / 2] {
            let exec = p2pc_sandbox::WasmExecutor::new(p2pc_sandbox::Config {
                fuel_yield_interval: interval,
                max_concurrent: 2,
                ..p2pc_sandbox::Config::default()
            })
            .expect("executor");
            let o = crate::support::run(&exec, "sha256", &[7u8; 100_000]).await;
            let output = ok(&o).to_vec();
            outcomes.push((output, o.usage.fuel_used));
        }
        assert!(outcomes[0].1 > 1_000_000, "the task yields many times");
        assert!(
            outcomes.windows(2).all(|w| w[0] == w[1]),
            "fuel or output changed with the yield interval: {:?}",
            outcomes.iter().map(|o| o.1).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_job_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let exec = executor();
    block_on(async {
        let t = Task {
            limits: Limits {
                timeout: Duration::from_millis(300),
                ..limits()
            },
            ..task("sleep")
        };
        let o = run_task(&exec, "hostile", t).await;
        assert_eq!(err(&o), &TaskError::Deadline { timeout_ms: 300 });
        // No grace period: the host's timer ends it as the deadline passes.
        assert!(o.usage.wall_time < Duration::from_millis(2300));
    });
}

#[test]
fn a_job_that_reports_an_error_is_a_guest_error() {
    let exec = executor();
    block_on(async {
        let o = run(&exec, "hello", b"").await;
        match err(&o) {
            TaskError::GuestError { message } => {
                assert!(message.contains("give a name"), "{message}")
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(o.usage.fuel_used > 0, "a guest error is still billed");
    });
}
