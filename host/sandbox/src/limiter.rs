//! Memory accounting for one task: enforces the memory limit across all of a
//! component's linear memories and remembers the peak and whether the limit
//! was ever hit (so a later trap can be reported as "memory limit").

use wasmtime::ResourceLimiter;

/// Tables are small and counted in elements; this bound stops a guest from
/// making the host allocate huge tables while leaving room for any real
/// program's indirect-call table.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

pub(crate) struct MemoryLimiter {
    limit: u64,
    current: u64,
    peak: u64,
    denied: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            current: 0,
            peak: 0,
            denied: false,
        }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// Whether the guest ever asked for memory beyond its limit.
    pub(crate) fn was_denied(&self) -> bool {
        self.denied
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired as u64).saturating_sub(current as u64);
        let total = self.current.saturating_add(grow);
        if total > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_memories_against_one_limit() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).expect("no error"));
        assert!(l.memory_growing(0, 30, None).expect("no error"));
        assert!(!l.memory_growing(60, 80, None).expect("no error"));
        assert!(l.was_denied());
        assert_eq!(l.peak(), 90);
    }
}
