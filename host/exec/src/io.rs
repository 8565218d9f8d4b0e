//! Capturing a child's output streams with a cap.

use std::io::Read;
use std::sync::mpsc;

use crate::confine::Exit;

/// What the supervising thread waits for.
pub(crate) enum Event {
    /// The child ended (or could not be waited for).
    Exited(std::io::Result<Exit>),
    /// The output passed its cap.
    Overflow,
}

/// A thread draining one stream, keeping the first `cap` bytes.
pub(crate) struct Capture {
    done: mpsc::Receiver<(Vec<u8>, bool)>,
}

impl Capture {
    /// Drains `stream` on a thread. Past `cap` the rest is read and
    /// dropped; if `overflow` is given, it is told once.
    pub(crate) fn spawn(
        mut stream: impl Read + Send + 'static,
        cap: usize,
        overflow: Option<mpsc::Sender<Event>>,
    ) -> Self {
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut over = false;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = cap - kept.len();
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                        if n > room && !over {
                            over = true;
                            if let Some(tx) = &overflow {
                                let _ = tx.send(Event::Overflow);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send((kept, over));
        });
        Self { done }
    }

    /// The captured bytes and whether more were dropped. `None` if the
    /// stream is still open long after the task ended: something outside
    /// its process group holds it, and the bytes cannot be trusted whole.
    pub(crate) fn finish(self) -> Option<(Vec<u8>, bool)> {
        self.done
            .recv_timeout(std::time::Duration::from_secs(30))
            .ok()
    }
}
