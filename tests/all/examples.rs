//! Every example, built both ways, run through the sandbox with its output
//! checked against an independent computation.

use p2pc_sandbox::{Call, Task, World};
use p2pc_tests::{Build, CARGO_COMPONENT_BUILT, EXAMPLES, guest};
use sha2::Digest;

use crate::support::{block_on, executor, ok};

const TEXT: &str =
    "The quick brown fox\njumps over the lazy dog.\nThe dog sleeps; the fox doesn't.\n";

fn check_example(build: Build) {
    assert!(
        build != Build::CargoComponent || CARGO_COMPONENT_BUILT,
        "cargo-component is not installed, so the examples were not built with \
         `cargo component build`; run scripts/setup.sh"
    );
    let exec = executor();
    block_on(async {
        for name in EXAMPLES {
            let bytes = std::fs::read(guest(name, build)).expect("example built");
            let program = exec
                .load(&bytes)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let run = |input: &[u8]| {
                let (exec, program) = (exec.clone(), program.clone());
                let task = Task::run(input.to_vec());
                async move { exec.run(&program, task).await }
            };
            match *name {
                "hello" => {
                    assert_eq!(program.world(), World::Job);
                    let o = run(b"p2pc").await;
                    assert_eq!(ok(&o), b"Hello, p2pc!");
                    assert_eq!(o.logs.len(), 1, "hello logs one line");
                    assert!(o.usage.fuel_used > 0);
                }
                "sha256" => {
                    assert_eq!(program.world(), World::Job);
                    for input in [&b""[..], b"abc", &[0x5a; 1000][..], TEXT.as_bytes()] {
                        let o = run(input).await;
                        let want = format!("{:x}\n", sha2::Sha256::digest(input));
                        assert_eq!(String::from_utf8_lossy(ok(&o)), want);
                    }
                }
                "mandelbrot" => {
                    assert_eq!(program.world(), World::Job);
                    let o = run(b"64 48 200").await;
                    let img = ok(&o);
                    let header = b"P5\n64 48\n255\n";
                    assert!(img.starts_with(header));
                    assert_eq!(img.len(), header.len() + 64 * 48);
                    // The set itself (black) and its outside (grey) both appear.
                    assert!(img[header.len()..].contains(&0));
                    assert!(img[header.len()..].iter().any(|&p| p > 16));
                    assert_eq!(o.progress, Some((48, 48)));
                }
                "rot13" => {
                    assert_eq!(program.world(), World::Command);
                    let o = run(b"Hello, p2pc!\n").await;
                    assert_eq!(ok(&o), b"Uryyb, c2cp!\n");
                }
                "wordcount" => {
                    assert_eq!(program.world(), World::MapReduce);
                    let mut outputs = Vec::new();
                    for shard in p2pc_types::split_at_lines(TEXT.as_bytes(), 3) {
                        let task = Task {
                            call: Call::Map(shard.to_vec()),
                            ..Task::run(Vec::new())
                        };
                        outputs.push(ok(&exec.run(&program, task).await).to_vec());
                    }
                    assert!(outputs.len() > 1, "the text splits into several shards");
                    let task = Task {
                        call: Call::Reduce(outputs),
                        ..Task::run(Vec::new())
                    };
                    let o = exec.run(&program, task).await;
                    let text = String::from_utf8(ok(&o).to_vec()).expect("utf-8");
                    let lines: Vec<&str> = text.lines().collect();
                    assert_eq!(
                        &lines[..4],
                        ["4\tthe", "2\tdog", "2\tfox", "1\tbrown"],
                        "{text}"
                    );
                    assert!(lines.contains(&"1\tdoesn't"), "{text}");
                }
                other => panic!("example {other} has no check; add one here"),
            }
        }
    });
}

#[test]
fn examples_built_for_wasm32_wasip2_run_and_give_the_right_output() {
    check_example(Build::WasiP2);
}

#[test]
fn examples_built_with_cargo_component_run_and_give_the_right_output() {
    check_example(Build::CargoComponent);
}
