//! A plan's audit trail in memory: append-only, in chunks of fixed size.
//!
//! A hot plan gathers millions of entries. In one `Vec` every doubling of its capacity
//! copies all of them while the plan's lock is held — a stall of milliseconds that every
//! purchase of the plan waits behind, in the tail of the latency. Here an append copies at
//! most the first chunk, while it grows to its full size: a full chunk stays where it is
//! and a new one is started.

use seatkeeper_domain::AuditEntry;

/// Entries per chunk: large enough that the chunk list stays short, small enough that
/// allocating (or, for the first, growing) a chunk is cheap.
const CHUNK: usize = 1024;

/// Entry `i` (0-based) is the plan's entry with `seq == i + 1`.
#[derive(Debug, Default)]
pub(crate) struct AuditTrail {
    chunks: Vec<Vec<AuditEntry>>,
}

impl AuditTrail {
    pub(crate) fn push(&mut self, entry: AuditEntry) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(entry),
            _ => {
                // The first chunk grows as a `Vec` does (most plans have a few entries);
                // the next ones are allocated whole, once the plan is known to be busy.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
    }

    /// Every entry from index `start` on, in order (none when `start` is past the end).
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = &AuditEntry> {
        let first = start / CHUNK;
        let skip = start % CHUNK;
        self.chunks.iter().skip(first).flatten().skip(skip)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &AuditEntry> {
        self.iter_from(0)
    }
}

impl Extend<AuditEntry> for AuditTrail {
    fn extend<I: IntoIterator<Item = AuditEntry>>(&mut self, entries: I) {
        for entry in entries {
            self.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use seatkeeper_domain::AuditContext;
    use seatkeeper_store_contract::support::{altered, new_plan};

    use super::*;

    fn entries(n: usize) -> Vec<AuditEntry> {
        let ctx = AuditContext::admin("test");
        let plan = new_plan("Starter", 10);
        (1..=n as u64)
            .map(|seq| AuditEntry::plan_created(&altered(&plan, |p| p.seq += seq), &ctx))
            .collect()
    }

    #[test]
    fn entries_come_back_in_order_from_any_start_across_chunk_boundaries() {
        let all = entries(3 * CHUNK + 7);
        let mut trail = AuditTrail::default();
        trail.extend(all.iter().cloned());
        assert_eq!(trail.iter().count(), all.len());
        for start in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 6] {
            let got: Vec<u64> = trail.iter_from(start).map(|e| e.seq).collect();
            let want: Vec<u64> = all[start..].iter().map(|e| e.seq).collect();
            assert_eq!(got, want, "from {start}");
        }
        assert_eq!(trail.iter().count(), all.len());
    }

    #[test]
    fn a_start_at_or_past_the_end_gives_nothing() {
        let mut trail = AuditTrail::default();
        assert_eq!(trail.iter_from(0).count(), 0);
        trail.extend(entries(CHUNK));
        assert_eq!(trail.iter_from(CHUNK).count(), 0);
        assert_eq!(trail.iter_from(CHUNK + 5).count(), 0);
        assert_eq!(trail.iter_from(10 * CHUNK).count(), 0);
    }

    #[test]
    fn appending_never_moves_an_entry_past_the_first_chunk() {
        let mut trail = AuditTrail::default();
        trail.extend(entries(CHUNK + 1));
        let written: *const AuditEntry = trail.iter_from(CHUNK).next().unwrap();
        trail.extend(entries(5 * CHUNK));
        assert!(std::ptr::eq(
            written,
            trail.iter_from(CHUNK).next().unwrap()
        ));
    }
}
