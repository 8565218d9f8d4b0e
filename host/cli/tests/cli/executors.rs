//! `p2pctl run` with every executor: process and container bundles, and
//! the wasm engine in an isolated worker process.

use p2pc_tests::skip;

use crate::{Env, fails, ok, path, text};

const PASS: Option<&str> = Some("exec pass");

fn have(tool: &str) -> bool {
    p2pc_exec::find_tool(tool).is_some()
}

#[test]
fn a_process_bundle_runs_where_the_executor_is_enabled() {
    if !have("bwrap") {
        return skip("bubblewrap (bwrap) is not installed");
    }
    let env = Env::new();
    ok(&env.run(&["key", "new", "me"], b"", PASS));
    let bundle = env.path("upper.p2pcb");
    let bundle = bundle.to_str().expect("utf-8");
    ok(&env.run(
        &[
            "bundle",
            "pack",
            "/bin/sh",
            "--executor",
            "process",
            "--name",
            "sh",
            "--key",
            "me",
            "--sign",
            "-o",
            bundle,
            "--arg",
            "-c",
            "--arg",
            "tr a-z A-Z",
        ],
        b"",
        PASS,
    ));
    let shown = ok(&env.run(&["bundle", "inspect", bundle], b"", None));
    assert!(shown.contains("executor:     process"), "{shown}");
    assert!(shown.contains("args:         -c 'tr a-z A-Z'"), "{shown}");

    // Off unless the operator turns it on.
    fails(
        &env.run(&["run", bundle, "--input", "-"], b"hi", None),
        2,
        "--enable process",
    );
    let out = env.run(
        &["run", bundle, "--input", "-", "--enable", "process"],
        b"hi",
        None,
    );
    assert_eq!(ok(&out), "HI");
    assert!(
        text(&out.stderr).contains("ok (process)"),
        "{}",
        text(&out.stderr)
    );

    // Or in node.toml.
    let config = env.path("node.toml");
    std::fs::write(&config, "[executors.process]\nenabled = true\n").expect("write");
    let config = config.to_str().expect("utf-8");
    let out = env.run(
        &["run", bundle, "--input", "-", "--config", config],
        b"ok",
        None,
    );
    assert_eq!(ok(&out), "OK");

    // A typo in node.toml is named.
    std::fs::write(config, "[executors.process]\nenabeld = true\n").expect("write");
    fails(
        &env.run(&["run", bundle, "--config", config], b"", None),
        2,
        "enabeld",
    );
}

#[test]
fn a_bare_program_runs_with_its_arguments() {
    if !have("bwrap") {
        return skip("bubblewrap (bwrap) is not installed");
    }
    let out = Env::new().run(
        &[
            "--json",
            "run",
            "--executor",
            "process",
            "--enable",
            "process",
            "/bin/sh",
            "--timeout",
            "1s",
            "--",
            "-c",
            "echo started; sleep 30",
        ],
        b"",
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ending"], "deadline", "{v}");
    assert_eq!(v["executor"], "process", "{v}");
}

#[test]
fn a_container_bundle_runs_where_the_executor_is_enabled() {
    let Some(busybox) = p2pc_exec::find_tool("busybox") else {
        return skip("busybox (Debian's busybox-static) is not installed");
    };
    let engine = p2pc_exec::ContainerExecutor::new(Default::default());
    if let Some(e) = engine.unavailable() {
        return skip(&e.to_string());
    }
    let env = Env::new();
    let tar = env.path("rootfs.tar");
    std::fs::write(&tar, p2pc_tests::busybox_rootfs(&busybox, &["sh", "tr"])).expect("write");
    ok(&env.run(&["key", "new", "me"], b"", PASS));
    let bundle = env.path("tool.p2pcb");
    let (tar, bundle) = (
        tar.to_str().expect("utf-8"),
        bundle.to_str().expect("utf-8"),
    );
    let pack = [
        "bundle",
        "pack",
        tar,
        "--executor",
        "container",
        "--name",
        "tool",
        "--key",
        "me",
    ];
    fails(&env.run(&pack, b"", PASS), 2, "needs its command");
    let signed = [
        &pack[..],
        &[
            "--sign", "-o", bundle, "--arg", "tr", "--arg", "a-z", "--arg", "A-Z",
        ],
    ]
    .concat();
    ok(&env.run(&signed, b"", PASS));
    let out = env.run(
        &["run", bundle, "--input", "-", "--enable", "container"],
        b"boxed",
        None,
    );
    assert_eq!(ok(&out), "BOXED");
}

#[test]
fn isolated_wasm_gives_the_same_output_and_fuel() {
    if !have("bwrap") {
        return skip("bubblewrap (bwrap) is not installed");
    }
    let env = Env::new();
    let hello = path("hello");
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "run", &hello, "--input", "-"];
        args.extend_from_slice(extra);
        let out = env.run(&args, b"isolation", None);
        ok(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let local = run(&[]);
    let isolated = run(&["--enable", "isolated-wasm"]);
    assert_eq!(isolated["executor"], "wasm (isolated)", "{isolated}");
    assert_eq!(isolated["output"], local["output"]);
    assert_eq!(isolated["fuel_used"], local["fuel_used"]);

    let wordcount = path("wordcount");
    fails(
        &env.run(
            &[
                "run",
                &wordcount,
                "--input",
                "-",
                "--enable",
                "isolated-wasm",
            ],
            b"a b a",
            None,
        ),
        2,
        "map/reduce jobs do not run in isolated workers yet",
    );
}
