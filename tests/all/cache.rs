//! The compiled-component cache: a second run does not compile again, in
//! the same executor or in a new one over the same directory, and a damaged
//! cache file is detected and replaced rather than loaded.

use p2pc_sandbox::{CacheStats, Config, Task, WasmExecutor};

use crate::support::{block_on, ok};

fn executor(dir: &std::path::Path) -> WasmExecutor {
    WasmExecutor::new(Config {
        cache_dir: Some(dir.to_owned()),
        ..Config::default()
    })
    .expect("executor")
}

#[test]
fn a_second_run_does_not_compile_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = p2pc_tests::guest_bytes("hello");
    block_on(async {
        let first = executor(dir.path());
        assert_eq!(
            ok(&first.run_component(&bytes, Task::run(b"a".to_vec())).await),
            b"Hello, a!"
        );
        assert_eq!(
            first.stats(),
            CacheStats {
                compiled: 1,
                ..CacheStats::default()
            }
        );

        // Same executor: served from memory, no compile, no disk read.
        assert_eq!(
            ok(&first.run_component(&bytes, Task::run(b"b".to_vec())).await),
            b"Hello, b!"
        );
        assert_eq!(
            first.stats(),
            CacheStats {
                compiled: 1,
                memory_hits: 1,
                ..CacheStats::default()
            }
        );

        // A new executor (a restarted node): loaded from disk, no compile.
        let second = executor(dir.path());
        assert_eq!(
            ok(&second.run_component(&bytes, Task::run(b"c".to_vec())).await),
            b"Hello, c!"
        );
        assert_eq!(
            second.stats(),
            CacheStats {
                disk_hits: 1,
                ..CacheStats::default()
            }
        );
    });
}

#[test]
fn a_damaged_cache_file_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = p2pc_tests::guest_bytes("hello");
    block_on(async {
        let first = executor(dir.path());
        ok(&first.run_component(&bytes, Task::run(b"a".to_vec())).await);
        let files = p2pc_sandbox::cache_files(dir.path()).expect("list cache");
        assert_eq!(files.len(), 1);
        let mut data = std::fs::read(&files[0]).expect("read cache file");
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        std::fs::write(&files[0], &data).expect("damage cache file");

        let second = executor(dir.path());
        assert_eq!(
            ok(&second.run_component(&bytes, Task::run(b"b".to_vec())).await),
            b"Hello, b!"
        );
        assert_eq!(
            second.stats(),
            CacheStats {
                compiled: 1,
                corrupt_files: 1,
                ..CacheStats::default()
            }
        );

        // The rewritten file is good again.
        let third = executor(dir.path());
        ok(&third.run_component(&bytes, Task::run(b"c".to_vec())).await);
        assert_eq!(third.stats().disk_hits, 1);
    });
}
