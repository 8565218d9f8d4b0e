//! The body of the executor's fuzz target in `fuzz/`: the frames an
//! isolated wasm worker sends back. The worker process runs guest code,
//! so its pipe is hostile input like a peer's. The normal test suite runs
//! the body over generated inputs too. It must never panic.

use crate::wire::{Partial, Request, Response};

/// The largest frame the fuzz body accepts, as the pool bounds a response
/// by the task's output and stderr limits.
const MAX: usize = 1 << 20;

/// `data[0]` sets the size of the pieces the rest arrives in (a pipe
/// gives any split); a whole frame is decoded as a response and turned
/// into the task's outcome, and as a request into a task.
pub fn frames(data: &[u8]) {
    let Some((&step, mut rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut frame = Partial::default();
    while !frame.is_complete() && !rest.is_empty() {
        let piece = &rest[..step.min(rest.len())];
        match frame.feed(piece, MAX) {
            Ok(n) => rest = &rest[n..],
            Err(_) => return,
        }
    }
    if !frame.is_complete() {
        return;
    }
    if let Ok(response) = frame.decode::<Response>() {
        let _ = response.into_outcome();
    }
    if let Ok(request) = frame.decode::<Request>() {
        let _ = request.task();
    }
}

#[cfg(test)]
mod tests {
    use p2pc_crypto::fuzzing::inputs;
    use prost::Message;

    use super::*;

    #[test]
    fn smoke_worker_frames() {
        let response = Response {
            ok: false,
            error_json: r#"{"code":"out_of_fuel","limit":5}"#.into(),
            logs_json: "[]".into(),
            ..Response::default()
        };
        let body = response.encode_to_vec();
        let mut frame = u32::try_from(body.len())
            .expect("small")
            .to_le_bytes()
            .to_vec();
        frame.extend_from_slice(&body);
        for split in [1u8, 3, 200] {
            let mut valid = vec![split];
            valid.extend_from_slice(&frame);
            for input in inputs("frames", &valid, 1500) {
                frames(&input);
            }
        }
    }
}
