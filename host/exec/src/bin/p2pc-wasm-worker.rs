//! An isolated wasm worker for [`p2pc_exec::WasmPool`]; `p2pctl internal
//! wasm-worker` is the same program. Used by this crate's tests.

fn main() -> std::process::ExitCode {
    p2pc_exec::worker::main()
}
