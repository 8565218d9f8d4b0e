//! Host bindings for the `p2pc:job` worlds, generated from `wit/job.wit`.
//!
//! One `bindgen!` per world; the second reuses the first's `host` and `types`
//! modules so both worlds share one implementation of the host interface.

/// The typed `job` world: `run(input) -> result<output, job-error>`.
pub mod job {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "p2pc:job/job",
        imports: {
            // `emit` traps when the output limit is passed.
            "p2pc:job/host.emit": trappable,
        },
        exports: { default: async },
    });
}

/// The `map-reduce` world: `map(shard)` and `reduce(outputs)`.
pub mod map_reduce {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "p2pc:job/map-reduce",
        with: {
            "p2pc:job/host": super::job::p2pc::job::host,
            "p2pc:job/types": super::job::p2pc::job::types,
        },
        exports: { default: async },
    });
}

pub use job::p2pc::job::host::{self, Level};
pub use job::p2pc::job::types::JobError;
