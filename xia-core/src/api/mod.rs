//! The application API: XIA sockets for Rust programs, talking to the host's `xiad`.
//!
//! In the spirit of the prototype's Xsocket API (`Xconnect`, `Xaccept`, `Xsendto`,
//! `XputChunk`, `XrequestChunk`...), as async Rust:
//!
//! ```no_run
//! # async fn demo() -> Result<(), xia_core::api::XiaError> {
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use xia_core::api::{FetchOptions, Xia};
//! // $XIAD_SOCKET or /run/xia/xiad.sock; every call gives up after 5 s.
//! let xia = Xia::default().with_timeout(Duration::from_secs(5));
//! let me = xia.info().await?;
//! let mut listener = xia.listen(None).await?; // a fresh SID
//! let dag = listener.dag().clone();
//! let mut s = xia.connect(&dag).await?;
//! s.write_all(b"hello").await?;
//! let (mut t, _peer) = listener.accept().await?;
//! let mut buf = [0u8; 5];
//! t.read_exact(&mut buf).await?;
//! let mut chunks = xia.chunks().await?;
//! let manifest = chunks.put_all(&vec![7u8; 4 << 20], 1 << 20).await?;
//! let mut fetch = chunks.fetch_manifest(&manifest, FetchOptions::default());
//! while let Some(chunk) = fetch.next().await {
//!     let _bytes = chunk?;
//! }
//! # let _ = me; Ok(()) }
//! ```
//!
//! Every call fails with a [`XiaError`] that says why (not registered, no route, refused,
//! timed out, the daemon gone...). Calls wait for ever unless the handle has a timeout
//! ([`Xia::with_timeout`]), which what it opens inherits (listeners, datagram sockets, chunk
//! clients, pingers, event streams: each has `set_timeout`). Stream reads and writes have their
//! own ([`XiaStream::set_read_timeout`], [`XiaStream::set_write_timeout`]).
//!
//! A stream is the daemon socket itself in raw mode, so its reads and writes cost what a Unix
//! socket costs; a read returns end of file only for the peer's orderly close.

mod chunks;
mod conn;
mod dgram;
mod error;
mod events;
mod names;
mod ping;
mod stream;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use chunks::{Announcer, ChunkClient, ChunkRef, Fetch, FetchOptions, Manifest, ManifestError, Publisher};
pub use dgram::{DgramReceiver, DgramSender, XiaDatagram};
pub use error::XiaError;
pub use events::EventStream;
pub use names::NameClient;
pub use ping::{PingReply, Pinger};
pub use stream::{XiaListener, XiaStream};

pub use crate::ipc::{ErrorCode, Event, HostInfo, StreamEnd};

use crate::dag::Dag;
use crate::ipc::{default_socket, Request, Response};
use crate::xid::Xid;
use conn::{deadline, unexpected, within, Conn};

/// A handle on the local daemon. Cheap to clone; each call opens what it needs.
#[derive(Debug, Clone)]
pub struct Xia {
    path: PathBuf,
    timeout: Option<Duration>,
}

impl Default for Xia {
    /// The daemon at `$XIAD_SOCKET`, or the default path.
    fn default() -> Self {
        Xia { path: default_socket(), timeout: None }
    }
}

/// The daemon's counters, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub Vec<(String, u64)>);

impl Stats {
    /// The counter `name` (0 if the daemon has none of that name).
    pub fn get(&self, name: &str) -> u64 {
        self.0.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
    }
}

impl Xia {
    /// The daemon listening at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Xia {
        Xia { path: path.into(), timeout: None }
    }

    /// The same daemon, with every call (and every call on what it opens) failing with
    /// [`XiaError::TimedOut`] past `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Xia {
        self.timeout = Some(timeout);
        self
    }

    /// The daemon's socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call(&self, req: Request) -> Result<Response, XiaError> {
        within(deadline(self.timeout), async {
            let mut c = Conn::open(&self.path).await?;
            c.call(&req, &[]).await
        })
        .await
    }

    /// This host's addresses (HID, DAG, AD, gateway, name server).
    pub async fn info(&self) -> Result<HostInfo, XiaError> {
        match self.call(Request::Info).await? {
            Response::Info(i) => Ok(i),
            m => Err(unexpected(&m)),
        }
    }

    /// Sends a route patch to the router whose DAG is `router` (where this host was before it
    /// moved): packets still addressed to the host's old DAG are sent on to where it is now
    /// registered, for `lifetime`. [`XiaError::NotRegistered`] until a router confirmed a
    /// registration.
    pub async fn patch_route(&self, router: &Dag, lifetime: Duration) -> Result<(), XiaError> {
        let lifetime_ms = lifetime.as_millis().min(u128::from(u32::MAX)) as u32;
        match self.call(Request::PatchRoute { router: router.clone(), lifetime_ms }).await? {
            Response::Ok => Ok(()),
            m => Err(unexpected(&m)),
        }
    }

    /// The daemon's counters.
    pub async fn stats(&self) -> Result<Stats, XiaError> {
        match self.call(Request::Stats).await? {
            Response::Stats(s) => Ok(Stats(s)),
            m => Err(unexpected(&m)),
        }
    }

    /// How stream `id` ended, as far as the daemon knows.
    pub async fn stream_status(&self, id: u64) -> Result<StreamEnd, XiaError> {
        match self.call(Request::StreamStatus { id }).await? {
            Response::Status { end } => Ok(end),
            m => Err(unexpected(&m)),
        }
    }

    /// Opens a stream to `dst` (a DAG whose intent is a SID), like `Xconnect`.
    pub async fn connect(&self, dst: &Dag) -> Result<XiaStream, XiaError> {
        within(deadline(self.timeout), async {
            let mut c = Conn::open(&self.path).await?;
            let answer = c.call(&Request::Connect { dst: dst.clone() }, &[]).await?;
            XiaStream::from_answer(c, answer, self.path.clone())
        })
        .await
    }

    /// Listens for streams on `sid` (`None`: a fresh SID), like `Xbind` + `Xlisten`.
    pub async fn listen(&self, sid: Option<Xid>) -> Result<XiaListener, XiaError> {
        within(deadline(self.timeout), async {
            let mut conn = Conn::open(&self.path).await?;
            match conn.call(&Request::Listen { sid }, &[]).await? {
                Response::Listening { dag } => Ok(XiaListener {
                    conn,
                    dag,
                    path: self.path.clone(),
                    timeout: self.timeout,
                    pending: None,
                }),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Binds a datagram socket to `sid` (`None`: a fresh SID).
    pub async fn bind_dgram(&self, sid: Option<Xid>) -> Result<XiaDatagram, XiaError> {
        XiaDatagram::bind(&self.path, sid, self.timeout).await
    }

    /// A client for publishing and fetching chunks.
    pub async fn chunks(&self) -> Result<ChunkClient, XiaError> {
        let conn = within(deadline(self.timeout), Conn::open(&self.path)).await?;
        Ok(ChunkClient::new(conn, self.timeout))
    }

    /// A client whose publications last only as long as it does: each `put` is a reference,
    /// `remove` drops one, and what is left is removed when the client is dropped or its
    /// process dies (a publisher that crashes leaves nothing published).
    pub async fn chunks_leased(&self) -> Result<ChunkClient, XiaError> {
        within(deadline(self.timeout), async {
            let mut conn = Conn::open(&self.path).await?;
            match conn.call(&Request::ChunkLease, &[]).await? {
                Response::Ok => Ok(ChunkClient::new(conn, self.timeout)),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// A pinger (XCMP echo).
    pub async fn pinger(&self) -> Result<Pinger, XiaError> {
        within(deadline(self.timeout), async {
            let mut conn = Conn::open(&self.path).await?;
            match conn.call(&Request::PingOpen, &[]).await? {
                Response::Ok => Ok(Pinger { conn, timeout: self.timeout }),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// The host's events from now on, with how it stands now.
    pub async fn events(&self) -> Result<EventStream, XiaError> {
        within(deadline(self.timeout), async {
            let mut conn = Conn::open(&self.path).await?;
            match conn.call(&Request::Subscribe, &[]).await? {
                Response::Subscribed(info) => Ok(EventStream { conn, info, timeout: self.timeout }),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }
}
