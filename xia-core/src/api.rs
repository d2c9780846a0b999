//! The application API: XIA sockets for Rust programs, talking to the host's `xiad`.
//!
//! In the spirit of the prototype's Xsocket API (`Xconnect`, `Xaccept`, `Xsendto`,
//! `XputChunk`, `XrequestChunk`...), as async Rust:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use xia_core::api::Xia;
//! let xia = Xia::default(); // $XIAD_SOCKET or /run/xia/xiad.sock
//! let me = xia.info().await?;
//! let mut listener = xia.listen(None).await?; // a fresh SID
//! let dag = listener.dag().clone();
//! let mut s = xia.connect(&dag).await?;
//! s.write_all(b"hello").await?;
//! let (mut t, _peer) = listener.accept().await?;
//! let mut buf = [0u8; 5];
//! t.read_exact(&mut buf).await?;
//! let mut chunks = xia.chunks().await?;
//! let (cid, cdag) = chunks.put(b"content".to_vec()).await?;
//! let back = chunks.fetch(cid, &cdag, None).await?;
//! # let _ = (me, back); Ok(()) }
//! ```
//!
//! A stream is the daemon socket itself in raw mode, so reads and writes cost what a Unix
//! socket costs. When a stream fails, its socket is reset; [`XiaStream::status`] then says why
//! (refused, reset, timed out, unreachable) and the I/O error's kind already matches it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use crate::dag::Dag;
use crate::ipc::{default_socket, ErrorCode, HostInfo, Msg};
use crate::xid::Xid;

/// A handle on the local daemon.
#[derive(Debug, Clone)]
pub struct Xia {
    path: PathBuf,
}

impl Default for Xia {
    /// The daemon at `$XIAD_SOCKET`, or the default path.
    fn default() -> Self {
        Xia { path: default_socket() }
    }
}

fn remote_error(code: ErrorCode, message: String) -> io::Error {
    io::Error::new(code.io_kind(), format!("xiad: {message}"))
}

fn unexpected(m: &Msg) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("xiad: unexpected answer {m:?}"))
}

/// A message-mode connection to the daemon.
#[derive(Debug)]
struct Framed {
    io: UnixStream,
    buf: Vec<u8>,
    /// A big `ChunkData` being read straight into its own buffer: (tag, data, bytes filled).
    body: Option<(u64, Vec<u8>, usize)>,
}

/// `ChunkData` messages at least this big skip the message buffer (no copy out of it).
const DIRECT_BODY: usize = 64 << 10;

impl Framed {
    async fn open(path: &Path) -> io::Result<Framed> {
        let io = UnixStream::connect(path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot reach xiad at {}: {e}", path.display())))?;
        Ok(Framed { io, buf: Vec::new(), body: None })
    }

    async fn send(&mut self, m: &Msg) -> io::Result<()> {
        self.io.write_all(&m.encode()).await
    }

    /// The next message. Cancel-safe.
    async fn recv(&mut self) -> io::Result<Msg> {
        let bad = |e| io::Error::new(io::ErrorKind::InvalidData, e);
        loop {
            if let Some((_, data, filled)) = self.body.as_mut() {
                if *filled < data.len() {
                    let n = self.io.read(&mut data[*filled..]).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "xiad closed the connection",
                        ));
                    }
                    *filled += n;
                    continue;
                }
                let (tag, data, _) = self.body.take().expect("checked");
                return Ok(Msg::ChunkData { tag, data });
            }
            if let Some(len) = Msg::frame_len(&self.buf).map_err(bad)? {
                if self.buf.len() >= len {
                    let m = Msg::decode(&self.buf[4..len]).map_err(bad)?;
                    self.buf.drain(..len);
                    return Ok(m);
                }
                // Header of a big ChunkData (type 106: tag u64, length u32, then the bytes): the
                // bytes go straight into the buffer handed to the application.
                if len >= DIRECT_BODY && self.buf.len() >= 17 && self.buf[4] == 106 {
                    let tag = u64::from_le_bytes(self.buf[5..13].try_into().expect("8 bytes"));
                    let n = u32::from_le_bytes(self.buf[13..17].try_into().expect("4 bytes")) as usize;
                    if 17 + n != len {
                        return Err(bad(crate::ipc::IpcError::Truncated));
                    }
                    let mut data = vec![0u8; n];
                    let have = self.buf.len() - 17;
                    data[..have].copy_from_slice(&self.buf[17..]);
                    self.buf.clear();
                    self.body = Some((tag, data, have));
                    continue;
                }
            }
            // `read_buf` appends only what it read, so a recv cancelled by a `select!` (xping
            // does that) loses nothing and leaves no garbage behind.
            self.buf.reserve(64 * 1024);
            let n = self.io.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "xiad closed the connection"));
            }
        }
    }

    /// One request, one answer (an error answer becomes an `Err`).
    async fn call(&mut self, m: &Msg) -> io::Result<Msg> {
        self.send(m).await?;
        match self.recv().await? {
            Msg::Error { code, message } => Err(remote_error(code, message)),
            other => Ok(other),
        }
    }
}

impl Xia {
    /// The daemon listening at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Xia {
        Xia { path: path.into() }
    }

    /// The daemon's socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This host's addresses (HID, DAG, AD, gateway, name server).
    pub async fn info(&self) -> io::Result<HostInfo> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::Info).await? {
            Msg::Info2(i) => Ok(*i),
            m => Err(unexpected(&m)),
        }
    }

    /// Sends a route patch to the router whose DAG is `router` (where this host was before it
    /// moved): packets still addressed to the host's old DAG are sent on to where it is now
    /// registered, for `lifetime`. Fails if no router has confirmed a registration yet.
    pub async fn patch_route(&self, router: &Dag, lifetime: Duration) -> io::Result<()> {
        let mut f = Framed::open(&self.path).await?;
        let lifetime_ms = lifetime.as_millis().min(u128::from(u32::MAX)) as u32;
        match f.call(&Msg::PatchRoute { router: router.clone(), lifetime_ms }).await? {
            Msg::Ok => Ok(()),
            Msg::Error { code, message } => Err(remote_error(code, message)),
            m => Err(unexpected(&m)),
        }
    }

    /// The daemon's counters, `name value` per line.
    pub async fn stats(&self) -> io::Result<String> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::Stats).await? {
            Msg::StatsText(t) => Ok(t),
            m => Err(unexpected(&m)),
        }
    }

    /// Opens a stream to `dst` (a DAG whose intent is a SID), like `Xconnect`.
    pub async fn connect(&self, dst: &Dag) -> io::Result<XiaStream> {
        let mut f = Framed::open(&self.path).await?;
        let answer = f.call(&Msg::Connect { dst: dst.clone() }).await?;
        XiaStream::from_answer(f, answer, &self.path)
    }

    /// Listens for streams on `sid` (`None`: a fresh SID), like `Xbind` + `Xlisten`.
    pub async fn listen(&self, sid: Option<Xid>) -> io::Result<XiaListener> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::Listen { sid }).await? {
            Msg::Listening { dag } => Ok(XiaListener { f, dag, path: self.path.clone() }),
            m => Err(unexpected(&m)),
        }
    }

    /// Binds a datagram socket to `sid` (`None`: a fresh SID).
    pub async fn bind_dgram(&self, sid: Option<Xid>) -> io::Result<XiaDatagram> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::DgramBind { sid }).await? {
            Msg::Bound { dag, max } => Ok(XiaDatagram { f, dag, max: max as usize }),
            m => Err(unexpected(&m)),
        }
    }

    /// A client for publishing and fetching chunks.
    pub async fn chunks(&self) -> io::Result<ChunkClient> {
        Ok(ChunkClient {
            f: Framed::open(&self.path).await?,
            next_tag: 1,
            done: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    /// A pinger (XCMP echo).
    pub async fn pinger(&self) -> io::Result<Pinger> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::PingOpen).await? {
            Msg::PingReady => Ok(Pinger { f }),
            m => Err(unexpected(&m)),
        }
    }

    /// How stream `id` ended: `None` if cleanly (or not yet).
    pub async fn stream_status(&self, id: u64) -> io::Result<Option<ErrorCode>> {
        let mut f = Framed::open(&self.path).await?;
        match f.call(&Msg::StreamStatus { id }).await? {
            Msg::Status { code } => Ok(code),
            m => Err(unexpected(&m)),
        }
    }
}

/// A STREAM connection: reliable, ordered bytes both ways (`AsyncRead` + `AsyncWrite`).
/// `shutdown` sends FIN; dropping it closes the connection.
#[derive(Debug)]
pub struct XiaStream {
    io: UnixStream,
    /// Stream bytes that arrived with the daemon's answer.
    early: Vec<u8>,
    early_at: usize,
    id: u64,
    local: Dag,
    peer: Dag,
    path: PathBuf,
}

impl XiaStream {
    fn from_answer(f: Framed, answer: Msg, path: &Path) -> io::Result<XiaStream> {
        match answer {
            Msg::Connected { id, local, peer } => Ok(XiaStream {
                io: f.io,
                early: f.buf,
                early_at: 0,
                id,
                local,
                peer,
                path: path.to_path_buf(),
            }),
            m => Err(unexpected(&m)),
        }
    }

    /// The daemon's id for this stream.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This end's DAG (host and SID).
    pub fn local_dag(&self) -> &Dag {
        &self.local
    }

    /// The other end's DAG.
    pub fn peer_dag(&self) -> &Dag {
        &self.peer
    }

    /// Why the stream ended, after an I/O error: refused, reset, timed out, unreachable.
    pub async fn status(&self) -> io::Result<Option<ErrorCode>> {
        Xia::at(&self.path).stream_status(self.id).await
    }
}

impl AsyncRead for XiaStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.early_at < self.early.len() {
            let n = buf.remaining().min(self.early.len() - self.early_at);
            let at = self.early_at;
            buf.put_slice(&self.early[at..at + n]);
            self.early_at += n;
            if self.early_at == self.early.len() {
                self.early = Vec::new();
                self.early_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for XiaStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A listening STREAM socket.
#[derive(Debug)]
pub struct XiaListener {
    f: Framed,
    dag: Dag,
    path: PathBuf,
}

impl XiaListener {
    /// The DAG clients connect to.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The next connection, with the peer's DAG, like `Xaccept`.
    pub async fn accept(&mut self) -> io::Result<(XiaStream, Dag)> {
        let (id, peer) = match self.f.recv().await? {
            Msg::Incoming { id, peer } => (id, peer),
            Msg::Error { code, message } => return Err(remote_error(code, message)),
            m => return Err(unexpected(&m)),
        };
        let mut f = Framed::open(&self.path).await?;
        let answer = f.call(&Msg::Attach { id }).await?;
        Ok((XiaStream::from_answer(f, answer, &self.path)?, peer))
    }
}

/// A datagram socket.
#[derive(Debug)]
pub struct XiaDatagram {
    f: Framed,
    dag: Dag,
    max: usize,
}

impl XiaDatagram {
    /// The socket's DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Largest datagram (to a destination with a DAG as long as this socket's).
    pub fn max_datagram(&self) -> usize {
        self.max
    }

    /// Sends one datagram to `dst`, like `Xsendto`. A datagram larger than one frame is an
    /// error (nothing is fragmented).
    pub async fn send_to(&mut self, data: &[u8], dst: &Dag) -> io::Result<()> {
        self.f.send(&Msg::SendTo { dst: dst.clone(), data: data.to_vec() }).await
    }

    /// The next datagram and its sender's DAG, like `Xrecvfrom`. Errors of earlier sends
    /// (unreachable, too large) are reported here.
    pub async fn recv_from(&mut self) -> io::Result<(Vec<u8>, Dag)> {
        match self.f.recv().await? {
            Msg::RecvFrom { src, data } => Ok((data, src)),
            Msg::Error { code, message } => Err(remote_error(code, message)),
            m => Err(unexpected(&m)),
        }
    }
}

/// Publishes and fetches chunks (content named by its SHA-1).
#[derive(Debug)]
pub struct ChunkClient {
    f: Framed,
    next_tag: u64,
    done: HashMap<u64, io::Result<Vec<u8>>>,
    order: VecDeque<u64>,
}

impl ChunkClient {
    /// Publishes `data` on this host; returns its CID and the DAG others fetch it at.
    pub async fn put(&mut self, data: Vec<u8>) -> io::Result<(Xid, Dag)> {
        self.f.send(&Msg::ChunkPut { data }).await?;
        loop {
            match self.f.recv().await? {
                Msg::Put { cid, dag } => return Ok((cid, dag)),
                Msg::Error { code, message } => return Err(remote_error(code, message)),
                other => self.note(other)?,
            }
        }
    }

    /// Stops publishing `cid`.
    pub async fn remove(&mut self, cid: Xid) -> io::Result<()> {
        self.f.send(&Msg::ChunkRemove { cid }).await?;
        loop {
            match self.f.recv().await? {
                Msg::Ok => return Ok(()),
                Msg::Error { code, message } => return Err(remote_error(code, message)),
                other => self.note(other)?,
            }
        }
    }

    fn note(&mut self, m: Msg) -> io::Result<()> {
        match m {
            Msg::ChunkData { tag, data } => {
                self.done.insert(tag, Ok(data));
                self.order.push_back(tag);
            }
            Msg::ChunkFailed { tag, code } => {
                self.done.insert(
                    tag,
                    Err(io::Error::new(code.io_kind(), format!("chunk fetch failed: {code:?}"))),
                );
                self.order.push_back(tag);
            }
            m => return Err(unexpected(&m)),
        }
        Ok(())
    }

    /// Starts fetching `cid` from `dag` (`len` if known); returns a tag for [`ChunkClient::next`].
    /// Many fetches can be in flight: the daemon pipelines them.
    pub async fn request(&mut self, cid: Xid, dag: &Dag, len: Option<usize>) -> io::Result<u64> {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.f
            .send(&Msg::ChunkFetch { tag, cid, dag: dag.clone(), len: len.map_or(0, |l| l as u64) })
            .await?;
        Ok(tag)
    }

    /// The next fetch to finish: its tag and its verified bytes (or why not).
    pub async fn next(&mut self) -> io::Result<(u64, io::Result<Vec<u8>>)> {
        if let Some(tag) = self.order.pop_front() {
            let r = self.done.remove(&tag).expect("ordered tags are stored");
            return Ok((tag, r));
        }
        let m = self.f.recv().await?;
        if let Msg::Error { code, message } = m {
            return Err(remote_error(code, message));
        }
        self.note(m)?;
        let tag = self.order.pop_front().expect("just noted");
        Ok((tag, self.done.remove(&tag).expect("just stored")))
    }

    /// Fetches one chunk, like `XrequestChunk` + `XreadChunk`.
    pub async fn fetch(&mut self, cid: Xid, dag: &Dag, len: Option<usize>) -> io::Result<Vec<u8>> {
        let want = self.request(cid, dag, len).await?;
        loop {
            if let Some(r) = self.done.remove(&want) {
                self.order.retain(|&t| t != want);
                return r;
            }
            let m = self.f.recv().await?;
            if let Msg::Error { code, message } = m {
                return Err(remote_error(code, message));
            }
            self.note(m)?;
        }
    }

    /// Fetches many chunks at once (pipelined), results in the order asked.
    pub async fn fetch_many(
        &mut self,
        items: &[(Xid, Dag, Option<usize>)],
    ) -> io::Result<Vec<io::Result<Vec<u8>>>> {
        let mut tags = Vec::with_capacity(items.len());
        for (cid, dag, len) in items {
            tags.push(self.request(*cid, dag, *len).await?);
        }
        let mut out = Vec::with_capacity(items.len());
        for t in tags {
            loop {
                if let Some(r) = self.done.remove(&t) {
                    self.order.retain(|&x| x != t);
                    out.push(r);
                    break;
                }
                let m = self.f.recv().await?;
                if let Msg::Error { code, message } = m {
                    return Err(remote_error(code, message));
                }
                self.note(m)?;
            }
        }
        Ok(out)
    }
}

/// What a ping got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingReply {
    /// An echo reply.
    Echo {
        /// Sequence number.
        seq: u16,
        /// Who answered.
        from: Dag,
        /// The data sent.
        data: Vec<u8>,
    },
    /// An XCMP error about an echo request.
    Error {
        /// Sequence number.
        seq: u16,
        /// Who reported it.
        from: Dag,
        /// XCMP type.
        kind: u8,
        /// XCMP code.
        code: u8,
    },
}

/// Sends XCMP echo requests and receives the replies (what `xping` uses).
#[derive(Debug)]
pub struct Pinger {
    f: Framed,
}

impl Pinger {
    /// Sends an echo request.
    pub async fn send(&mut self, dst: &Dag, seq: u16, data: &[u8]) -> io::Result<()> {
        self.f.send(&Msg::PingSend { dst: dst.clone(), seq, data: data.to_vec() }).await
    }

    /// The next reply or error.
    pub async fn recv(&mut self) -> io::Result<PingReply> {
        match self.f.recv().await? {
            Msg::EchoReply { seq, from, data } => Ok(PingReply::Echo { seq, from, data }),
            Msg::EchoError { seq, from, kind, code } => Ok(PingReply::Error { seq, from, kind, code }),
            Msg::Error { code, message } => Err(remote_error(code, message)),
            m => Err(unexpected(&m)),
        }
    }
}
