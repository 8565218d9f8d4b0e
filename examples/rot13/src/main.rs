//! rot13: a plain WASI P2 command (`wasi:cli/run`), written with nothing but
//! the Rust standard library.
//!
//! Shows: any program that reads stdin and writes stdout runs on p2pc, in any
//! language that targets WASI P2; no SDK needed. The input is stdin, stdout
//! is the output, and a non-zero exit status is a job error.
//!
//! Run it:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p rot13
//! echo 'Hello, p2pc!' | p2pctl run target/wasm32-wasip2/release/rot13.wasm --input -
//! ```
//!
//! Output: `Uryyb, c2cp!`

use std::io::{self, BufRead, Write};

fn rot13(b: u8) -> u8 {
    match b {
        b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
        _ => b,
    }
}

fn main() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let mut reader = io::BufReader::new(stdin);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let out: Vec<u8> = buf.iter().copied().map(rot13).collect();
        let n = buf.len();
        stdout.write_all(&out)?;
        reader.consume(n);
    }
    stdout.flush()
}
