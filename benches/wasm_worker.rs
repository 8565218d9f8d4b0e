//! The isolated wasm worker used by the executors bench (the same program
//! as `p2pctl internal wasm-worker`).

fn main() -> std::process::ExitCode {
    p2pc_exec::worker::main()
}
