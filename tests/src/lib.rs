//! Paths to the guest components built by this crate's `build.rs`, for the
//! workspace integration tests (`tests/all/`) and the benchmarks.
//!
//! This crate has no runtime code of its own; it exists so that one build
//! script builds every guest once, both ways.

#![deny(missing_docs)]

use std::path::PathBuf;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Whether `cargo component build` was available and built the examples.
pub const CARGO_COMPONENT_BUILT: bool = generated::CARGO_COMPONENT_BUILT;

/// The example jobs under `examples/`.
pub const EXAMPLES: &[&str] = &["hello", "wordcount", "sha256", "mandelbrot", "rot13"];

/// How a guest was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// `cargo build --release --target wasm32-wasip2`.
    WasiP2,
    /// `cargo component build --release` (wasm32-wasip1 plus the adapter).
    CargoComponent,
}

/// The component file of guest package `name` built the given way.
pub fn guest(name: &str, build: Build) -> PathBuf {
    // cdylib outputs use the crate name (underscores); binaries keep dashes.
    let file = if matches!(name, "rot13" | "hostile-cmd" | "net-client") {
        format!("{name}.wasm")
    } else {
        format!("{}.wasm", name.replace('-', "_"))
    };
    let target = match build {
        Build::WasiP2 => "wasm32-wasip2",
        Build::CargoComponent => "wasm32-wasip1",
    };
    PathBuf::from(generated::GUEST_DIR)
        .join(target)
        .join("release")
        .join(file)
}

/// The bytes of guest `name` built for wasm32-wasip2.
pub fn guest_bytes(name: &str) -> Vec<u8> {
    let path = guest(name, Build::WasiP2);
    std::fs::read(&path).unwrap_or_else(|e| panic!("guest {} missing: {e}", path.display()))
}
