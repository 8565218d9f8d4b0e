//! Bytes that are not a runnable job get a clear error, not a crash.

use p2pc_sandbox::{Call, Task, TaskError};

use crate::support::{block_on, executor, ok};

#[test]
fn garbage_a_core_module_and_a_wrong_world_each_get_a_clear_error() {
    let exec = executor();
    block_on(async {
        let garbage = b"this is not wasm at all".to_vec();
        let core = wasmtime_core_module();
        let mut truncated = p2pc_tests::guest_bytes("hello");
        truncated.truncate(truncated.len() / 2);
        let wrong = p2pc_tests::guest_bytes("wrong-world");

        let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
            ("garbage", garbage, "invalid_component", "magic number"),
            ("empty", Vec::new(), "invalid_component", "not WebAssembly"),
            (
                "core module",
                core,
                "invalid_component",
                "core WebAssembly module",
            ),
            ("truncated component", truncated, "invalid_component", ""),
            ("wrong world", wrong, "wrong_world", "greet"),
        ];
        for (what, bytes, code, needle) in cases {
            let err = exec.load(&bytes).await.expect_err(what);
            assert_eq!(err.code(), code, "{what}: {err}");
            assert!(err.to_string().contains(needle), "{what}: {err}");
            assert!(err.is_rejection());
        }
        // Still healthy.
        let o = exec
            .run_component(&p2pc_tests::guest_bytes("hello"), Task::run(b"x".to_vec()))
            .await;
        assert_eq!(ok(&o), b"Hello, x!");
    });
}

#[test]
fn calling_an_export_the_world_lacks_is_a_wrong_world() {
    let exec = executor();
    block_on(async {
        let program = exec
            .load(&p2pc_tests::guest_bytes("hello"))
            .await
            .expect("loads");
        let o = exec
            .run(
                &program,
                Task {
                    call: Call::Map(b"x".to_vec()),
                    ..Task::run(Vec::new())
                },
            )
            .await;
        assert!(
            matches!(&o.result, Err(TaskError::WrongWorld { reason }) if reason.contains("map")),
            "{:?}",
            o.result
        );
    });
}

/// The smallest valid core module: magic, version 1, no sections.
fn wasmtime_core_module() -> Vec<u8> {
    b"\0asm\x01\0\0\0".to_vec()
}
