//! Group commit for an embedded store: callers that wrote and now need their write on disk
//! share one flush instead of each running its own in turn.
//!
//! A sled flush writes every dirty buffer of the database, whoever dirtied it, and takes
//! about as long for ten runs' records as for one; flushes called one after another were a
//! server's throughput bound (two per run, 1,100–1,500 runs/s from 1 to 100 clients, bench
//! figure `serve`). Here a caller takes a ticket after its write, and returns once a flush
//! that *began after* its ticket has completed: exactly the guarantee of flushing itself.
//! While one flush runs, the callers arriving wait for it to end and then one of them runs
//! the next, which covers them all.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    ended: Condvar,
}

#[derive(Default)]
struct State {
    /// The next caller's ticket.
    next: u64,
    /// Every ticket below this is on disk.
    durable: u64,
    /// A flush is running.
    flushing: bool,
}

impl GroupFlush {
    /// Returns once everything written before this call is on disk: after a flush that
    /// began after the call, run by this caller (`flush`) or another. A failed flush is
    /// the error of the caller that ran it; the others try again.
    pub(crate) fn flush<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        loop {
            if state.durable > ticket {
                return Ok(());
            }
            if !state.flushing {
                state.flushing = true;
                let covers = state.next;
                drop(state);
                let flushed = flush();
                state = self.lock();
                state.flushing = false;
                if flushed.is_ok() {
                    state.durable = state.durable.max(covers);
                }
                self.ended.notify_all();
                flushed?;
                continue;
            }
            state = self
                .ended
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before anything could panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A disk: writes are numbered; a flush makes durable every write made before it began.
    #[derive(Default)]
    struct Disk {
        written: AtomicU64,
        durable: AtomicU64,
        flushes: AtomicU64,
    }

    impl Disk {
        fn write(&self) -> u64 {
            self.written.fetch_add(1, Ordering::SeqCst) + 1
        }
        fn flush(&self) -> Result<(), ()> {
            let upto = self.written.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            self.durable.fetch_max(upto, Ordering::SeqCst);
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn every_caller_returns_with_its_write_durable_and_callers_share_flushes() {
        let (disk, group) = (Arc::new(Disk::default()), Arc::new(GroupFlush::default()));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (disk, group) = (disk.clone(), group.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mine = disk.write();
                        group.flush(|| disk.flush()).unwrap();
                        assert!(
                            disk.durable.load(Ordering::SeqCst) >= mine,
                            "returned before write {mine} was flushed"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = disk.flushes.load(Ordering::SeqCst);
        assert!(flushes < 320, "no flush was shared: {flushes} for 320 writes");
    }

    #[test]
    fn a_failed_flush_fails_its_caller_and_the_next_caller_flushes_again() {
        let group = GroupFlush::default();
        assert_eq!(group.flush(|| Err("disk full")), Err("disk full"));
        let ran = AtomicU64::new(0);
        group
            .flush(|| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<(), &str>(())
            })
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
