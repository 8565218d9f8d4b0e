//! `p2pctl run` as a user meets it.

use crate::{ok, p2pctl, path, text};

#[test]
fn run_prints_the_output_to_stdout_and_a_summary_to_stderr() {
    let out = p2pctl(&["run", &path("hello"), "--input", "-"], b"world");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!");
    let err = text(&out.stderr);
    assert!(err.contains("ok (p2pc:job/job)"), "{err}");
    assert!(
        err.contains("fuel ") && err.contains("peak memory ") && err.contains("wall "),
        "{err}"
    );
    assert!(err.contains("[job info] greeting world"), "{err}");
}

#[test]
fn run_reads_input_files_and_writes_output_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    std::fs::write(&input, "Hello, p2pc!\n").expect("write input");
    let out = p2pctl(
        &[
            "run",
            &path("rot13"),
            "-i",
            input.to_str().expect("utf-8"),
            "-o",
            output.to_str().expect("utf-8"),
            "-q",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.is_empty(),
        "--quiet prints nothing on success: {}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&output).expect("output written"),
        "Uryyb, c2cp!\n"
    );
}

#[test]
fn run_splits_map_reduce_jobs_into_shards() {
    let out = p2pctl(
        &["run", &path("wordcount"), "--input", "-", "--shards", "2"],
        b"b a\nb\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\tb\n1\ta\n");
    assert!(
        text(&out.stderr).contains("tasks 3"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_describes_the_whole_outcome() {
    let out = p2pctl(&["run", &path("sha256"), "--input", "-", "--json"], b"abc");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert_eq!(v["ending"], "success");
    assert_eq!(v["world"], "p2pc:job/job");
    assert_eq!(
        v["output"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    assert!(v["fuel_used"].as_u64().expect("number") > 0);
    assert!(v["peak_memory"].as_u64().expect("number") > 0);

    let out = p2pctl(
        &[
            "run",
            &path("hostile"),
            "--input",
            "-",
            "--json",
            "--fuel",
            "5000",
        ],
        b"loop",
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert_eq!(v["ending"], "out_of_fuel");
    assert_eq!(v["error"]["detail"]["limit"], 5000);
    assert_eq!(v["fuel_used"], 5000);
}

#[test]
fn failures_exit_1_with_a_reason_that_names_the_limit() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "loop",
            &["--fuel", "100000"],
            "out of fuel: the job used its whole limit of 100000 fuel",
        ),
        (
            "memory",
            &["--memory", "32MiB"],
            "memory limit: the job tried to use more than 32MiB",
        ),
        (
            "loop",
            &["--fuel", "100000000000000", "--timeout", "300ms"],
            "deadline: the job was still running after 300ms",
        ),
        (
            "emit-flood",
            &["--max-output", "64KiB"],
            "output too large: the job wrote more than 64KiB",
        ),
        ("recursion", &[], "stack overflow"),
    ];
    for (input, flags, reason) in cases {
        let mut args = vec!["run", &*path("hostile").leak(), "--input", "-"];
        args.extend_from_slice(flags);
        let out = p2pctl(&args, input.as_bytes());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{input}: {err}");
        assert!(err.contains(reason), "{input}: {err}");
        // The job's own stderr is shown, but p2pctl itself never panics.
        assert!(
            !err.contains("thread 'main'") && !err.contains("stack backtrace"),
            "{input}: {err}"
        );
    }
}

#[test]
fn an_enormous_timeout_is_no_deadline_rather_than_a_crash() {
    let out = p2pctl(
        &[
            "run",
            &path("hello"),
            "--input",
            "-",
            "--timeout",
            "100000000years",
        ],
        b"x",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, x!");
}

#[test]
fn bad_components_and_bad_arguments_get_short_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "definitely not wasm").expect("write");
    let out = p2pctl(&["run", garbage.to_str().expect("utf-8")], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid component: not WebAssembly"),
        "{}",
        text(&out.stderr)
    );

    let out = p2pctl(&["run", &path("wrong-world")], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wrong world"),
        "{}",
        text(&out.stderr)
    );

    let out = p2pctl(&["run", "/no/such/component.wasm"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read component /no/such/component.wasm"));

    for (flag, value, needle) in [
        ("--memory", "lots", "invalid size"),
        ("--timeout", "soon", "invalid duration \"soon\""),
        ("--fuel", "-1", "cannot be negative"),
        ("--fuel", "1,0000", "groups of three"),
        ("--fuel", "10X", "unknown suffix"),
        ("--memory", "-64MiB", "cannot be negative"),
        ("--timeout", "-5s", "cannot be negative"),
        ("--memory", "8GiB", "more than the 4GiB"),
    ] {
        let out = p2pctl(&["run", &path("hello"), flag, value], b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(needle),
            "{flag} {value}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn help_lists_every_command_and_option() {
    let out = p2pctl(&["--help"], b"");
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("run") && help.contains("Exit status"),
        "{help}"
    );

    let out = p2pctl(&["run", "--help"], b"");
    let help = text(&out.stdout);
    for option in [
        "--input",
        "--output",
        "--fuel",
        "--memory",
        "--timeout",
        "--max-output",
        "--json",
        "--nondeterministic",
        "--seed",
        "--scratch",
        "--allow-network",
        "--shards",
        "--cache-dir",
        "--no-cache",
        "--quiet",
    ] {
        assert!(help.contains(option), "run --help lacks {option}");
    }
}

#[test]
fn fuel_is_read_as_it_is_printed() {
    // The summary prints fuel with separators; the same text is a limit.
    for (fuel, limit) in [("1,000", "1000"), ("1_000", "1000"), ("2k", "2000")] {
        let out = p2pctl(
            &["run", &path("hostile"), "--input", "-", "--fuel", fuel],
            b"loop",
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("whole limit of {limit} fuel")),
            "--fuel {fuel}: {err}"
        );
    }
    let out = p2pctl(
        &["run", &path("hello"), "--fuel", "10G", "--input", "-"],
        b"x",
    );
    assert_eq!(text(&out.stdout), "Hello, x!", "{}", text(&out.stderr));
}

/// A markdown table, which pulldown-cmark renders only with `-T`.
const TABLE: &str = "| a | b |\n|---|---|\n| 1 | 2 |\n";

#[test]
fn a_third_party_wasi_program_gets_its_options() {
    let cmark = path("pulldown-cmark");
    let plain = ok(&p2pctl(&["run", &cmark, "--input", "-"], TABLE.as_bytes()));
    assert!(!plain.contains("<table>"), "{plain}");
    let tables = ok(&p2pctl(
        &["run", &cmark, "--input", "-", "--", "-T"],
        TABLE.as_bytes(),
    ));
    assert!(
        tables.contains("<table>") && tables.contains("<td>2</td>"),
        "{tables}"
    );
    // Long options and several of them.
    let both = ok(&p2pctl(
        &["run", &cmark, "--input", "-", "--", "--enable-tables", "-F"],
        TABLE.as_bytes(),
    ));
    assert_eq!(both, tables);
    // The same in an isolated wasm worker: the arguments cross its pipe.
    let isolated = ok(&p2pctl(
        &[
            "run",
            &cmark,
            "--input",
            "-",
            "--enable",
            "isolated-wasm",
            "--allow-unisolated",
            "--",
            "-T",
        ],
        TABLE.as_bytes(),
    ));
    assert_eq!(isolated, tables);

    // Its own refusal of an option is the job's error, with its stderr.
    let out = p2pctl(
        &["run", &cmark, "--input", "-", "--", "--no-such-option"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("job stderr") && err.contains("no-such-option"),
        "{err}"
    );

    // Arguments are part of the task: they go into its seed, so the same
    // component and input with other arguments see other randomness, and
    // the same arguments the same.
    let entropy = |args: &[&str]| {
        let hostile = path("hostile");
        let mut argv = vec!["run", hostile.as_str(), "--input", "-", "--"];
        argv.extend_from_slice(args);
        let out = p2pctl(&argv, b"entropy");
        assert!(out.status.success(), "{}", text(&out.stderr));
        out.stdout
    };
    assert_eq!(entropy(&["a"]), entropy(&["a"]));
    assert_ne!(entropy(&[]), entropy(&["a"]));
    assert_ne!(entropy(&["a", "b"]), entropy(&["ab"]));

    // Bounded in count and size, before anything runs.
    let many: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut argv = vec!["run", cmark.as_str(), "--"];
    argv.extend(many.iter().map(String::as_str));
    crate::fails(&p2pctl(&argv, b""), 2, "more than the 256 a task may have");
}

#[test]
fn a_bundle_carries_its_arguments_and_a_run_adds_more() {
    let env = crate::Env::new();
    ok(&env.run(&["key", "new", "me", "--insecure-no-passphrase"], b"", None));
    let bundle = env.path("cmark.p2pcb");
    let bundle = bundle.to_str().expect("utf-8");
    let cmark = path("pulldown-cmark");
    ok(&env.run(
        &[
            "bundle", "pack", &cmark, "--name", "cmark", "--key", "me", "--sign", "--arg", "-T",
            "-o", bundle,
        ],
        b"",
        None,
    ));
    let info = ok(&env.run(&["bundle", "inspect", bundle], b"", None));
    assert!(info.contains("args:         -T"), "{info}");
    let tables = ok(&env.run(&["run", bundle, "--input", "-"], TABLE.as_bytes(), None));
    assert!(tables.contains("<table>"), "{tables}");
    // Arguments after -- follow the bundle's: -e prints events instead.
    let events = ok(&env.run(
        &["run", bundle, "--input", "-", "--", "-e"],
        TABLE.as_bytes(),
        None,
    ));
    assert!(
        events.contains("Table") && !events.contains("<table>"),
        "{events}"
    );
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = p2pctl(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for command in ["job", "ledger", "node", "drain", "cancel"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
}
