//! One memory budget for all linear memories and tables of a run's instance.

use wasmtime::ResourceLimiter;

/// Bytes wasmtime allocates per table element: a pointer's worth (see
/// `ResourceLimiter::table_growing`).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// One budget for every linear memory and table of a run's instance together: a component
/// has several core instances, each may have memories and tables, and a per-memory limit
/// would let N memories take N times the limit. Growth is counted as `desired - current`
/// (the instance is never shrunk, and a store lives for one run). A refused growth traps
/// with a message naming the limit. Works the same with or without the pooling allocator:
/// wasmtime consults the store's limiter in both.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    /// What the last allowed growth added, taken back if wasmtime then fails it.
    pending: usize,
    /// Set when the limit refused a growth: the trap is then reported as the limit.
    pub(super) hit: Option<&'static str>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            pending: 0,
            hit: None,
        }
    }

    /// Why the limit was hit, for the run's error.
    pub(super) fn message(&self, what: &str) -> String {
        format!(
            "the guest exceeded its memory limit of {} MiB ({what}: linear memories and tables together)",
            self.limit >> 20
        )
    }

    fn grow(&mut self, bytes: usize, what: &'static str) -> wasmtime::Result<bool> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.pending = bytes;
                Ok(true)
            }
            _ => {
                self.hit = Some(what);
                Err(wasmtime::Error::msg(self.message(what)))
            }
        }
    }

    fn grow_failed(&mut self) {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current), "memory.grow")
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES), "table.grow")
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn several_memories_share_one_limit() {
        let mut l = MemoryLimiter::new(64 * MIB);
        // Three memories of 30 MiB each: each alone is under the limit, together over it.
        assert!(l.memory_growing(0, 30 * MIB, None).unwrap());
        assert!(l.memory_growing(0, 30 * MIB, None).unwrap());
        let err = l.memory_growing(0, 30 * MIB, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 64 MiB"), "{err}");
        assert_eq!(l.hit, Some("memory.grow"));
    }

    #[test]
    fn growth_counts_only_the_difference() {
        let mut l = MemoryLimiter::new(64 * MIB);
        // One memory grown step by step to the limit exactly.
        let mut size = 0;
        while size < 64 * MIB {
            assert!(l.memory_growing(size, size + MIB, None).unwrap());
            size += MIB;
        }
        assert!(l.memory_growing(size, size + 65536, None).is_err());
    }

    #[test]
    fn tables_count_against_the_same_limit() {
        let mut l = MemoryLimiter::new(MIB);
        // 1 MiB of table elements is 131072 pointers; many tables each under the old
        // per-table cap of 100k elements used to add up without bound.
        let per_table = 16_384; // 128 KiB each
        for _ in 0..8 {
            assert!(l.table_growing(0, per_table, None).unwrap());
        }
        let err = l.table_growing(0, 1, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 1 MiB"), "{err}");
        assert_eq!(l.hit, Some("table.grow"));
    }

    #[test]
    fn memories_and_tables_together() {
        let mut l = MemoryLimiter::new(2 * MIB);
        assert!(l.memory_growing(0, MIB + MIB / 2, None).unwrap());
        // 512 KiB of table would fit alone, not next to the memory plus one element more.
        assert!(
            l.table_growing(0, (MIB / 2) / TABLE_ELEMENT_BYTES, None)
                .unwrap()
        );
        assert!(l.table_growing(10, 11, None).is_err());
    }

    #[test]
    fn a_failed_growth_is_not_counted() {
        let mut l = MemoryLimiter::new(2 * MIB);
        assert!(l.memory_growing(0, 2 * MIB, None).unwrap());
        // wasmtime refused it (over the memory's own maximum): the budget is given back.
        l.memory_grow_failed(wasmtime::Error::msg("over maximum"))
            .unwrap();
        assert!(l.memory_growing(0, 2 * MIB, None).unwrap());
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let mut l = MemoryLimiter::new(64 * MIB);
        assert!(l.memory_growing(0, MIB, None).unwrap());
        assert!(l.memory_growing(0, usize::MAX, None).is_err());
        assert!(l.table_growing(0, usize::MAX, None).is_err());
    }
}
