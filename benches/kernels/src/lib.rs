//! Compute kernels for the sandbox overhead benchmark. The same source is
//! compiled natively (linked into the bench) and to wasm (inside the
//! `kernels-guest` component), so the ratio of their times is the cost of
//! running under the sandbox.
//!
//! Each kernel takes a size and returns a checksum, so neither compiler can
//! discard the work and the bench can check both builds agree.

#![deny(missing_docs)]

use std::hint::black_box;

/// A hash loop: FNV-1a-style mixing over `rounds` generated words, with a
/// rotate and multiply per step. Integer ALU bound.
pub fn hash_loop(rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..rounds {
        h ^= i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = h.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    h
}

/// Multiplies two `n`×`n` matrices of f64 with a cache-friendly loop order.
/// Memory and floating-point bound.
pub fn matmul(n: usize) -> u64 {
    let a: Vec<f64> = (0..n * n).map(|i| (i % 7) as f64 * 0.5).collect();
    let b: Vec<f64> = (0..n * n).map(|i| (i % 5) as f64 * 0.25).collect();
    let mut c = vec![0.0f64; n * n];
    // Row slices rather than `c[i * n + j]` indexing: each row's bounds are
    // checked once, so both compilers can keep the inner loop tight.
    for (c_row, a_row) in c.chunks_exact_mut(n).zip(a.chunks_exact(n)) {
        for (&aik, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
            for (cij, &bkj) in c_row.iter_mut().zip(b_row) {
                *cij += aik * bkj;
            }
        }
    }
    c.iter().fold(0u64, |acc, x| {
        acc.wrapping_mul(31).wrapping_add(x.to_bits())
    })
}

/// Naive recursive Fibonacci. Call bound: about 1.6^n calls.
pub fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    fib(black_box(n - 1)) + fib(black_box(n - 2))
}

/// Runs kernel `name` at `size`; `None` for an unknown kernel.
pub fn run(name: &str, size: u64) -> Option<u64> {
    Some(match name {
        "hash" => hash_loop(size),
        "matmul" => matmul(size as usize),
        "fib" => fib(size as u32),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_compute_known_values() {
        assert_eq!(fib(20), 6765);
        assert_eq!(run("fib", 10), Some(55));
        assert_ne!(hash_loop(10), hash_loop(11));
        assert_eq!(matmul(3), matmul(3));
        assert_eq!(run("nope", 1), None);
    }
}
