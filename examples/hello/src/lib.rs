//! hello: the smallest typed job (world `p2pc:job/job`).
//!
//! Shows: one function plus one macro line is a job; a job error for bad
//! input; a log line.
//!
//! Run it:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p hello
//! echo -n world | p2pctl run target/wasm32-wasip2/release/hello.wasm --input -
//! ```
//!
//! Output: `Hello, world!`

use p2pc_guest::JobError;

fn greet(input: Vec<u8>) -> p2pc_guest::Result {
    let name = std::str::from_utf8(&input)?.trim();
    if name.is_empty() {
        return Err(JobError::invalid_input("give a name as the input"));
    }
    p2pc_guest::log::info(format!("greeting {name}"));
    Ok(format!("Hello, {name}!").into_bytes())
}

p2pc_guest::job!(greet);
