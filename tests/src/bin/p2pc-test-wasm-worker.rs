//! An isolated wasm worker for the tests' nodes (`p2pctl internal
//! wasm-worker` is the same program).

fn main() -> std::process::ExitCode {
    p2pc_exec::worker::main()
}
