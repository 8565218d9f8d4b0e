//! One executor runs many tasks at once on tokio; a long task does not hold
//! up short ones, even on a single-threaded runtime.

use std::time::Duration;

use p2pc_sandbox::{Limits, Task};

use crate::support::{TEST_TIMEOUT, executor, ok};

#[test]
fn a_long_task_does_not_block_short_ones_on_one_thread() {
    let exec = executor();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, async {
            let hostile = exec
                .load(&p2pc_tests::guest_bytes("hostile"))
                .await
                .expect("load");
            let hello = exec
                .load(&p2pc_tests::guest_bytes("hello"))
                .await
                .expect("load");
            let spinner = {
                let (exec, hostile) = (exec.clone(), hostile.clone());
                let limits = Limits {
                    fuel: u64::MAX,
                    timeout: Duration::from_secs(60),
                    ..Limits::DEFAULT
                };
                tokio::spawn(async move {
                    exec.run(
                        &hostile,
                        Task {
                            limits,
                            ..Task::run(b"loop".to_vec())
                        },
                    )
                    .await
                })
            };
            // Give the spinner the thread first.
            tokio::task::yield_now().await;
            for i in 0..20 {
                let input = format!("n{i}");
                let o = exec
                    .run(&hello, Task::run(input.clone().into_bytes()))
                    .await;
                assert_eq!(ok(&o), format!("Hello, {input}!").as_bytes());
            }
            // The spinner is still going: the short tasks ran beside it, not
            // after it. Abort it rather than wait out its deadline.
            assert!(!spinner.is_finished());
            spinner.abort();
        })
        .await
        .expect("test timed out");
    });
}

#[test]
fn many_tasks_run_concurrently_and_all_finish() {
    let exec = executor();
    crate::support::block_on(async {
        let program = exec
            .load(&p2pc_tests::guest_bytes("sha256"))
            .await
            .expect("load");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..100u32 {
            let (exec, program) = (exec.clone(), program.clone());
            set.spawn(async move {
                (
                    i,
                    exec.run(&program, Task::run(i.to_le_bytes().to_vec()))
                        .await,
                )
            });
        }
        let results = set.join_all().await;
        assert_eq!(results.len(), 100);
        for (_, o) in &results {
            assert_eq!(ok(o).len(), 65);
        }
    });
}
