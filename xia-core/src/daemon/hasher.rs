//! A thread that hashes chunks, fetched ones (checked against their CID) and published ones
//! (their CID computed): SHA-1 at ~1.6 GB/s is 0.6 ms a MiB the event loop would otherwise
//! spend not receiving. Jobs go through a channel, results come back through another, with an
//! eventfd in the loop's epoll set to say so.

use std::io;
use std::sync::{mpsc, Arc};

use super::inbound::Payload;
use crate::sys::EventFd;
use crate::transport::chunk::Verify;
use crate::xid::Xid;

/// Work for the thread.
#[derive(Debug)]
pub(super) enum Job {
    /// A fetched chunk to check against its CID.
    Verify(Verify),
    /// A chunk an application publishes, on connection `conn`: its CID (a chunk that came in
    /// pieces is made one buffer here, off the loop).
    Name { conn: u64, data: Payload },
}

/// What the thread did.
#[derive(Debug)]
pub(super) enum Hashed {
    /// A fetched chunk, and whether it matched its CID.
    Verified(Verify, bool),
    /// A chunk to publish, with its CID, and the bytes of the daemon's budget it held.
    Named { conn: u64, data: Arc<[u8]>, cid: Xid, charge: usize },
}

#[derive(Debug)]
pub(super) struct Hasher {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Hashed>,
    pub(super) wake: EventFd,
}

impl Hasher {
    /// Starts the thread. It inherits the caller's signal mask (a daemon blocks SIGTERM first,
    /// so that the signal reaches its signalfd instead of killing the process from there).
    pub(super) fn start() -> io::Result<Hasher> {
        let wake = EventFd::new()?;
        let wake2 = wake.try_clone()?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new().name("xiad-hash".into()).spawn(move || {
            // Ends when the daemon drops its sender.
            for job in rx {
                if tx.send(job.run()).is_err() {
                    return;
                }
                wake2.wake();
            }
        })?;
        Ok(Hasher { jobs, done, wake })
    }

    /// Hands a job to the thread; gives it back if the thread is gone.
    pub(super) fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|mpsc::SendError(j)| j)
    }

    /// The next job done.
    pub(super) fn try_done(&self) -> Option<Hashed> {
        self.done.try_recv().ok()
    }
}

impl Job {
    /// Does it (on the thread, or on the loop when there is no thread).
    pub(super) fn run(self) -> Hashed {
        match self {
            Job::Verify(v) => {
                let ok = v.check();
                Hashed::Verified(v, ok)
            }
            Job::Name { conn, data } => {
                let (data, charge) = data.into_bytes();
                let cid = Xid::cid_of(&data);
                Hashed::Named { conn, data, cid, charge }
            }
        }
    }
}
