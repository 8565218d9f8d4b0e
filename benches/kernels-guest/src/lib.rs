//! kernels-guest: runs one benchmark kernel. Input `NAME SIZE` (e.g.
//! `fib 30`); output the kernel's checksum as decimal text. An empty input
//! does nothing and returns nothing: the trivial job of the warm-start
//! benchmark.

use p2pc_guest::JobError;

fn run(input: Vec<u8>) -> p2pc_guest::Result {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(&input)?;
    let (name, size) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| JobError::invalid_input("expected NAME SIZE"))?;
    let size: u64 = size
        .parse()
        .map_err(|_| JobError::invalid_input("SIZE is not a number"))?;
    let sum = p2pc_kernels::run(name, size)
        .ok_or_else(|| JobError::invalid_input(format!("no kernel {name:?}")))?;
    Ok(sum.to_string().into_bytes())
}

p2pc_guest::job!(run);
