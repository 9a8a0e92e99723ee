//! Flushes the store in a thread of its own, for blocks whose durability
//! nobody waits on.
//!
//! A block that came from a peer is reported to nobody: its sender already
//! has it, and a node that loses it in a crash fetches it again. So the
//! node connects it, publishes the new tip and relays it first, and makes
//! it durable here, off the critical path of propagation (Bitcoin Core
//! likewise flushes its chainstate in the background, not per block).
//! Blocks the node reports as accepted (mined here, or submitted over RPC)
//! are flushed before the report, as before; such a flush also makes every
//! earlier block durable.
//!
//! Requests coalesce: one flush covers every request made before it began.

use crate::lock;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::store::{ChainStore, SledStore};

#[derive(Default)]
struct State {
    requested: u64,
    done: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

pub struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub fn start(store: Arc<SledStore>) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || run(&worker, &store))?;
        Ok(Flusher {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Asks for everything committed so far to be made durable soon.
    pub fn request(&self) {
        let mut st = lock(&self.shared.state);
        st.requested += 1;
        self.shared.changed.notify_all();
    }

    /// Waits until every request made so far has been flushed.
    #[cfg(test)]
    pub fn wait(&self) {
        let mut st = lock(&self.shared.state);
        let target = st.requested;
        while st.done < target && !st.stop {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Flushes what was requested, then stops the thread.
    pub fn stop(&self) {
        lock(&self.shared.state).stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Nice value of threads whose work follows the tip: the indexer and the
/// flusher. They yield to block validation, relay and RPC (nice 0).
pub const BACKGROUND_NICE: i32 = 10;
/// Nice value of the proof-of-work threads, below everything else: a
/// node that mines on every core still validates, relays and indexes at
/// once (as cpuminer runs its threads at the lowest priority). On an
/// otherwise idle machine the hash rate is the same.
pub const MINER_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to `nice` (Linux).
/// Elsewhere, and if the call fails, nothing changes.
pub fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take and return plain integers; on
    // Linux, PRIO_PROCESS with a thread id applies to that thread only
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) != 0 {
            tracing::debug!("cannot lower the priority of thread {tid}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

fn run(shared: &Shared, store: &SledStore) {
    lower_thread_priority(BACKGROUND_NICE);
    loop {
        let target = {
            let mut st = lock(&shared.state);
            while st.done == st.requested && !st.stop {
                st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.done == st.requested {
                return;
            }
            st.requested
        };
        if let Err(e) = store.flush() {
            // the next flush (in the background, of a local block, or at
            // shutdown) tries again; until then a crash loses only blocks
            // that peers still have
            tracing::error!("cannot flush the store: {e}");
        }
        lock(&shared.state).done = target;
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_flushed_and_stop_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        let flusher = Flusher::start(store.clone()).unwrap();
        for _ in 0..100 {
            flusher.request();
        }
        flusher.wait();
        let st = lock(&flusher.shared.state);
        assert_eq!((st.requested, st.done), (100, 100));
        drop(st);
        flusher.stop();
        // a stopped flusher has flushed everything it was asked to
        assert_eq!(lock(&flusher.shared.state).done, 100);
    }
}
