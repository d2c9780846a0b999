//! A thread that hashes fetched chunks: SHA-1 at ~1.6 GB/s is 0.6 ms a MiB the event loop would
//! otherwise spend not receiving. Jobs go through a channel, results come back through another,
//! with an eventfd in the loop's epoll set to say so.

use std::io;
use std::sync::mpsc;

use crate::sys::EventFd;
use crate::transport::chunk::Verify;

#[derive(Debug)]
pub(super) struct Hasher {
    jobs: mpsc::Sender<Verify>,
    done: mpsc::Receiver<(Verify, bool)>,
    pub(super) wake: EventFd,
}

impl Hasher {
    /// Starts the thread. It inherits the caller's signal mask (a daemon blocks SIGTERM first,
    /// so that the signal reaches its signalfd instead of killing the process from there).
    pub(super) fn start() -> io::Result<Hasher> {
        let wake = EventFd::new()?;
        let wake2 = wake.try_clone()?;
        let (jobs, rx) = mpsc::channel::<Verify>();
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new().name("xiad-hash".into()).spawn(move || {
            // Ends when the daemon drops its sender.
            for v in rx {
                let ok = v.check();
                if tx.send((v, ok)).is_err() {
                    return;
                }
                wake2.wake();
            }
        })?;
        Ok(Hasher { jobs, done, wake })
    }

    /// Hands a chunk to the thread; gives it back if the thread is gone.
    pub(super) fn submit(&self, v: Verify) -> Result<(), Verify> {
        self.jobs.send(v).map_err(|mpsc::SendError(v)| v)
    }

    /// The next hashed chunk and whether it matched its CID.
    pub(super) fn try_done(&self) -> Option<(Verify, bool)> {
        self.done.try_recv().ok()
    }
}
