//! `p2pctl key`: identities in the encrypted keystore.

use crate::{Env, fails, ok};

#[test]
fn new_list_show_and_export_never_print_the_secret() {
    let env = Env::new();
    let created = ok(&env.run(&["key", "new", "alice"], b"", Some("s3cret pass")));
    assert!(
        created.contains("created key alice") && created.contains("peer id:    12D3KooW"),
        "{created}"
    );

    let public = ok(&env.run(&["key", "export-public", "alice"], b"", None));
    let public = public.trim();
    assert_eq!(public.len(), 64);
    let list = ok(&env.run(&["key", "list"], b"", None));
    assert!(
        list.contains("alice") && list.contains(public) && list.contains("encrypted"),
        "{list}"
    );

    let json: serde_json::Value = serde_json::from_str(&ok(&env.run(
        &["key", "show", "alice", "--json"],
        b"",
        None,
    )))
    .expect("json");
    assert_eq!(json["public_key"], public);
    assert_eq!(json["encrypted"], true);

    // The key file holds no plaintext seed, and nothing printed did either.
    let file = std::fs::read_to_string(env.path("keys/alice.key")).expect("key file");
    assert!(!file.contains("insecure_seed"), "{file}");
}

#[test]
fn a_key_without_a_passphrase_needs_the_explicit_flag() {
    let env = Env::new();
    // No passphrase from anywhere and no terminal: refused, nothing written.
    fails(
        &env.run(&["key", "new", "bob"], b"", None),
        2,
        "a passphrase is needed",
    );
    assert!(!env.path("keys/bob.key").exists());
    let out = ok(&env.run(
        &["key", "new", "bob", "--insecure-no-passphrase"],
        b"",
        None,
    ));
    assert!(out.contains("NO (stored in the clear)"), "{out}");
}

#[test]
fn existing_keys_are_never_overwritten_and_wrong_passphrases_change_nothing() {
    let env = Env::new();
    ok(&env.run(&["key", "new", "carol"], b"", Some("right")));
    let before = std::fs::read(env.path("keys/carol.key")).expect("key file");
    fails(
        &env.run(&["key", "new", "carol"], b"", Some("other")),
        2,
        "already exists",
    );

    let pass_file = env.path("pass.txt");
    std::fs::write(&pass_file, "wrong\n").expect("write");
    let component = crate::path("hello");
    let out = env.run(
        &[
            "bundle",
            "pack",
            &component,
            "--name",
            "h",
            "--key",
            "carol",
            "--sign",
            "--passphrase-file",
            pass_file.to_str().expect("utf-8"),
        ],
        b"",
        None,
    );
    fails(&out, 2, "wrong passphrase for key \"carol\"");
    assert_eq!(
        std::fs::read(env.path("keys/carol.key")).expect("key file"),
        before
    );
}

#[test]
fn import_from_a_seed_and_from_a_key_file() {
    let env = Env::new();
    let seed = env.path("seed.hex");
    std::fs::write(&seed, format!("{}\n", "07".repeat(32))).expect("write seed");
    let a = ok(&env.run(
        &[
            "key",
            "import",
            "dave",
            "--seed-file",
            seed.to_str().expect("utf-8"),
        ],
        b"",
        Some("pw"),
    ));
    // The same seed always gives the same identity.
    let b = ok(&env.run(
        &[
            "key",
            "import",
            "dave2",
            "--seed-file",
            seed.to_str().expect("utf-8"),
        ],
        b"",
        Some("pw2"),
    ));
    let key_of = |s: &str| {
        s.lines()
            .find(|l| l.contains("public key"))
            .map(str::to_owned)
    };
    assert_eq!(key_of(&a), key_of(&b));

    let other = Env::new();
    let from = env.path("keys/dave.key");
    ok(&other.run(
        &[
            "key",
            "import",
            "d",
            "--from",
            from.to_str().expect("utf-8"),
        ],
        b"",
        None,
    ));
    assert_eq!(
        ok(&other.run(&["key", "export-public", "d"], b"", None)),
        ok(&env.run(&["key", "export-public", "dave"], b"", None))
    );

    let short = env.path("short.hex");
    std::fs::write(&short, "abcd").expect("write");
    fails(
        &env.run(
            &[
                "key",
                "import",
                "x",
                "--seed-file",
                short.to_str().expect("utf-8"),
            ],
            b"",
            Some("pw"),
        ),
        2,
        "32 bytes",
    );
}

/// Runs `p2pctl args` on a pseudo-terminal (util-linux `script`), typing
/// `typed` at it, as a person at a terminal would.
fn on_terminal(env: &Env, args: &str, typed: &str) -> std::process::Output {
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs util-linux `script` to give p2pctl a terminal"
    );
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_p2pctl"));
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .env("P2PC_KEYSTORE", env.path("keys"))
        .env_remove("P2PC_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("script starts");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), typed.as_bytes())
        .expect("type");
    child.wait_with_output().expect("script finishes")
}

#[test]
fn the_passphrase_prompt_asks_twice_and_the_key_then_unlocks() {
    let env = Env::new();
    let out = on_terminal(&env, "key new typed", "open sesame\nopen sesame\n");
    let shown = crate::text(&out.stdout);
    assert!(
        out.status.success() && shown.contains("created key typed"),
        "{shown}"
    );
    // (Whether the terminal echoes cannot be checked here: the test types
    // ahead, before rpassword turns echo off, so the pty echoes it.)

    let out = on_terminal(&env, "key new typo", "first\nsecond\n");
    assert!(!out.status.success());
    assert!(crate::text(&out.stdout).contains("do not match"));
    assert!(!env.path("keys/typo.key").exists());

    // The typed passphrase is the one that unlocks the key.
    let bundle = env.path("b.p2pcb");
    let pack = [
        "bundle",
        "pack",
        &crate::path("hello"),
        "--name",
        "b",
        "--key",
        "typed",
        "--sign",
        "-o",
        bundle.to_str().expect("utf-8"),
    ];
    ok(&env.run(&pack, b"", Some("open sesame")));
}
