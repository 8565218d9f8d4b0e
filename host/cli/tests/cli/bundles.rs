//! `p2pctl bundle` and running bundles: signed, tamper-evident, trusted.

use crate::{Env, fails, ok, path};

const PASS: Option<&str> = Some("bundle pass");

/// A keystore with key `pub1` and a signed hello bundle; returns its path.
fn signed_hello(env: &Env, extra: &[&str]) -> String {
    ok(&env.run(&["key", "new", "pub1"], b"", PASS));
    let out = env.path("hello.p2pcb");
    let out = out.to_str().expect("utf-8").to_owned();
    let component = path("hello");
    let mut args = vec![
        "bundle",
        "pack",
        &component,
        "--name",
        "hello",
        "--version",
        "1.2.3",
        "--key",
        "pub1",
        "--sign",
        "-o",
        &out,
    ];
    args.extend_from_slice(extra);
    ok(&env.run(&args, b"", PASS));
    out
}

#[test]
fn a_signed_bundle_verifies_inspects_and_runs() {
    let env = Env::new();
    let bundle = signed_hello(
        &env,
        &["--fuel", "5M", "--timeout", "90s", "--expires-in", "30days"],
    );
    let v = ok(&env.run(&["bundle", "verify", &bundle, "--trust", "pub1"], b"", None));
    assert!(v.starts_with("ok: hello 1.2.3 signed by "), "{v}");
    let info = ok(&env.run(&["bundle", "inspect", &bundle], b"", None));
    assert!(
        info.contains("p2pc:job/job")
            && info.contains("fuel:         5,000,000")
            && info.contains("timeout:      1m 30s")
            && info.contains(" UTC (now)")
            || info.contains(" UTC (1 second ago)"),
        "{info}"
    );
    assert!(info.contains("signature:    valid"), "{info}");
    let expires = info
        .lines()
        .find(|l| l.starts_with("expires:"))
        .expect("an expires line");
    assert!(
        expires.ends_with("UTC (in 30 days)") || expires.ends_with("UTC (in 29 days)"),
        "{expires}"
    );
    // --json keeps plain numbers.
    let json: serde_json::Value = serde_json::from_str(&ok(&env.run(
        &["--json", "bundle", "inspect", &bundle],
        b"",
        None,
    )))
    .expect("json");
    assert_eq!(json["limits"]["fuel"], 5_000_000);
    assert_eq!(json["limits"]["timeout_ms"], 90_000);
    assert!(json["created_unix"].as_u64().expect("unix seconds") > 1_700_000_000);
    assert_eq!(
        ok(&env.run(
            &["run", &bundle, "--input", "-", "--trust", "pub1"],
            b"ann",
            None
        )),
        "Hello, ann!"
    );
}

#[test]
fn unsigned_tampered_untrusted_and_expired_bundles_are_refused() {
    let env = Env::new();
    let bundle = signed_hello(&env, &[]);

    // Unsigned.
    let unsigned = env.path("unsigned.p2pcb");
    let unsigned = unsigned.to_str().expect("utf-8");
    ok(&env.run(
        &[
            "bundle",
            "pack",
            &path("hello"),
            "--name",
            "u",
            "--key",
            "pub1",
            "-o",
            unsigned,
        ],
        b"",
        None,
    ));
    fails(
        &env.run(&["run", unsigned], b"", None),
        2,
        "bundle is unsigned",
    );

    // Tampered: a byte in the component, and a byte in the manifest.
    let bytes = std::fs::read(&bundle).expect("bundle");
    for (at, needle) in [(bytes.len() - 100, "component was altered"), (20, "")] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let bad_path = env.path("bad.p2pcb");
        std::fs::write(&bad_path, &bad).expect("write");
        let out = env.run(&["run", bad_path.to_str().expect("utf-8")], b"", None);
        fails(&out, 2, needle);
        assert!(out.stdout.is_empty());
    }

    // A publisher outside the trust policy.
    ok(&env.run(
        &["key", "new", "other", "--insecure-no-passphrase"],
        b"",
        None,
    ));
    fails(
        &env.run(&["run", &bundle, "--trust", "other"], b"", None),
        2,
        "not in this runner's trust policy",
    );
    fails(
        &env.run(
            &["bundle", "verify", &bundle, "--trust", "other"],
            b"",
            None,
        ),
        2,
        "trust policy",
    );

    // Expired: valid for one second, checked after it passed is not
    // something a test should sleep for, so make one already expired.
    let expired = env.path("expired.p2pcb");
    let expired = expired.to_str().expect("utf-8");
    ok(&env.run(
        &[
            "bundle",
            "pack",
            &path("hello"),
            "--name",
            "e",
            "--key",
            "pub1",
            "--sign",
            "--expires-in",
            "0s",
            "-o",
            expired,
        ],
        b"",
        PASS,
    ));
    fails(&env.run(&["run", expired], b"", None), 2, "bundle expired");
}

#[test]
fn a_bundle_asking_for_a_capability_needs_the_grant() {
    let env = Env::new();
    let bundle = signed_hello(&env, &["--capability", "scratch"]);
    fails(
        &env.run(&["run", &bundle, "--input", "-"], b"x", None),
        2,
        "grant it with --scratch",
    );
    assert_eq!(
        ok(&env.run(&["run", &bundle, "--input", "-", "--scratch"], b"x", None)),
        "Hello, x!"
    );
}

#[test]
fn signing_with_another_key_than_the_publisher_is_refused() {
    let env = Env::new();
    ok(&env.run(&["key", "new", "pub1"], b"", PASS));
    ok(&env.run(&["key", "new", "mallory"], b"", PASS));
    let out = env.path("h.p2pcb");
    let out = out.to_str().expect("utf-8");
    ok(&env.run(
        &[
            "bundle",
            "pack",
            &path("hello"),
            "--name",
            "h",
            "--key",
            "pub1",
            "-o",
            out,
        ],
        b"",
        None,
    ));
    let before = std::fs::read(out).expect("bundle");
    fails(
        &env.run(&["bundle", "sign", out, "--key", "mallory"], b"", PASS),
        2,
        "publisher",
    );
    assert_eq!(
        std::fs::read(out).expect("bundle"),
        before,
        "a failed sign leaves the file as it was"
    );
}

#[test]
fn pack_refuses_what_is_not_a_runnable_component() {
    let env = Env::new();
    ok(&env.run(
        &["key", "new", "pub1", "--insecure-no-passphrase"],
        b"",
        None,
    ));
    fails(
        &env.run(
            &[
                "bundle",
                "pack",
                &path("wrong-world"),
                "--name",
                "w",
                "--key",
                "pub1",
            ],
            b"",
            None,
        ),
        2,
        "wrong world",
    );
}

#[test]
fn verified_bundles_are_kept_in_the_store() {
    let env = Env::new();
    let bundle = signed_hello(&env, &[]);
    let id = ok(&env.run(&["bundle", "add", &bundle, "--trust", "pub1"], b"", None));
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let listed = ok(&env.run(&["bundle", "ls"], b"", None));
    assert!(
        listed.contains(id) && listed.contains("hello 1.2.3"),
        "{listed}"
    );
    // The bundle file is a pinned blob: `blob rm` refuses it.
    let blobs: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["blob", "ls", "--json"], b"", None))).expect("json");
    assert_eq!(blobs[0]["pinned"], true);

    // A tampered bundle is not added.
    let mut bad = std::fs::read(&bundle).expect("bundle");
    let n = bad.len();
    bad[n - 10] ^= 1;
    let bad_path = env.path("bad.p2pcb");
    std::fs::write(&bad_path, bad).expect("write");
    fails(
        &env.run(
            &["bundle", "add", bad_path.to_str().expect("utf-8")],
            b"",
            None,
        ),
        2,
        "altered",
    );
}
