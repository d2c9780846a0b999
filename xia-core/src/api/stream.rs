//! STREAM sockets: connections and listeners.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::Sleep;

use super::conn::{deadline, unexpected, within, Conn};
use super::{Xia, XiaError};
use crate::dag::Dag;
use crate::ipc::{Request, Response, StreamEnd};

type StatusQuery = Pin<Box<dyn Future<Output = Result<StreamEnd, XiaError>> + Send>>;

/// The tasks waiting for the daemon's answer about the stream's end, one per direction (a
/// stream split into halves has a reader and a writer): the answer wakes both.
#[derive(Debug, Default)]
struct Waiters {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            if let Some(w) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// A STREAM connection: reliable, ordered bytes both ways (`AsyncRead` + `AsyncWrite`).
/// `shutdown` sends FIN after what was written; dropping it closes the connection the same way
/// (or resets it, as TCP does, if bytes it received were never read).
///
/// A read returns end of file only when the peer closed its direction in order; a stream that
/// was reset, timed out, became unreachable or lost its daemon fails the read with an I/O error
/// carrying the [`XiaError`] (see [`XiaError::from_io`]), after the bytes that arrived before.
/// Reads and writes wait for ever unless [`XiaStream::set_read_timeout`] /
/// [`XiaStream::set_write_timeout`] say otherwise: a timeout counts the time without progress
/// since the last read (or write) that returned.
pub struct XiaStream {
    io: UnixStream,
    /// Stream bytes that arrived with the daemon's answer.
    early: Vec<u8>,
    early_at: usize,
    id: u64,
    local: Dag,
    peer: Dag,
    path: PathBuf,
    /// The daemon ended the socket's read side (end of file or reset).
    read_ended: bool,
    /// The daemon closed the socket: writes cannot go on.
    write_ended: bool,
    /// The daemon's answer about the end, once asked.
    end: Option<Result<StreamEnd, XiaError>>,
    query: Option<StatusQuery>,
    waiters: Arc<Waiters>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for XiaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XiaStream")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("end", &self.end)
            .finish()
    }
}

impl XiaStream {
    pub(crate) fn from_answer(conn: Conn, answer: Response, path: PathBuf) -> Result<XiaStream, XiaError> {
        match answer {
            Response::Connected { id, local, peer } => {
                let (io, early) = conn.into_raw();
                Ok(XiaStream {
                    io,
                    early,
                    early_at: 0,
                    id,
                    local,
                    peer,
                    path,
                    read_ended: false,
                    write_ended: false,
                    end: None,
                    query: None,
                    waiters: Arc::default(),
                    read_timeout: None,
                    write_timeout: None,
                    read_timer: None,
                    write_timer: None,
                })
            }
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

    /// Reads that wait longer than this for a byte fail with [`XiaError::TimedOut`].
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
        self.read_timer = None;
    }

    /// Writes that wait longer than this for room fail with [`XiaError::TimedOut`].
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
        self.write_timer = None;
    }

    /// How the stream ended, as far as the daemon knows (asks it).
    pub async fn status(&self) -> Result<StreamEnd, XiaError> {
        Xia::at(&self.path).stream_status(self.id).await
    }

    /// The daemon ended our socket: asks it (once) how the stream ended. Both directions may
    /// wait for the answer; it wakes both.
    fn poll_end(&mut self, dir: Dir, cx: &mut Context<'_>) -> Poll<Result<StreamEnd, XiaError>> {
        if let Some(end) = &self.end {
            return Poll::Ready(end.clone());
        }
        let slot = match dir {
            Dir::Read => &self.waiters.read,
            Dir::Write => &self.waiters.write,
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        let (path, id) = (self.path.clone(), self.id);
        let query =
            self.query.get_or_insert_with(|| Box::pin(async move { Xia::at(path).stream_status(id).await }));
        let waker = Waker::from(self.waiters.clone());
        let end = ready!(query.as_mut().poll(&mut Context::from_waker(&waker)));
        self.query = None;
        self.end = Some(end.clone());
        // The other direction may be waiting too.
        self.waiters.wake_by_ref();
        Poll::Ready(end)
    }
}

/// Arms `timer` for `timeout` (if not armed) and says whether it expired.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, timeout: Option<Duration>, cx: &mut Context<'_>) -> bool {
    let Some(t) = timeout else { return false };
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
    sleep.as_mut().poll(cx).is_ready()
}

/// The daemon closed its end of our socket.
fn ended_by_daemon(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
}

/// What the daemon's answer means for a read that reached the end of the socket.
fn read_end(end: Result<StreamEnd, XiaError>) -> io::Result<()> {
    match end {
        // The peer closed in order (the stream may still be open for our writes).
        Ok(StreamEnd::Open | StreamEnd::Clean) => Ok(()),
        Ok(StreamEnd::Failed(code)) => Err(XiaError::from_code(code, String::new()).into()),
        Ok(StreamEnd::Unknown) => {
            Err(XiaError::DaemonGone("xiad no longer knows the stream (restarted?)".into()).into())
        }
        Err(e) => Err(e.into()),
    }
}

impl AsyncRead for XiaStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.early_at < this.early.len() {
            let n = buf.remaining().min(this.early.len() - this.early_at);
            buf.put_slice(&this.early[this.early_at..this.early_at + n]);
            this.early_at += n;
            if this.early_at == this.early.len() {
                this.early = Vec::new();
                this.early_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if !this.read_ended {
            let before = buf.filled().len();
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Pending => {
                    if expired(&mut this.read_timer, this.read_timeout, cx) {
                        this.read_timer = None;
                        return Poll::Ready(Err(XiaError::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) if buf.filled().len() > before || buf.remaining() == 0 => {
                    this.read_timer = None;
                    return Poll::Ready(Ok(()));
                }
                // End of file: how did the stream end?
                Poll::Ready(Ok(())) => this.read_ended = true,
                Poll::Ready(Err(e)) if ended_by_daemon(&e) => this.read_ended = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        this.read_timer = None;
        this.poll_end(Dir::Read, cx).map(read_end)
    }
}

impl AsyncWrite for XiaStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.write_ended {
            match Pin::new(&mut this.io).poll_write(cx, data) {
                Poll::Pending => {
                    if expired(&mut this.write_timer, this.write_timeout, cx) {
                        this.write_timer = None;
                        return Poll::Ready(Err(XiaError::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(n)) => {
                    this.write_timer = None;
                    return Poll::Ready(Ok(n));
                }
                Poll::Ready(Err(e)) if ended_by_daemon(&e) => this.write_ended = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        // The daemon closed the socket: the stream failed, or is over and takes no more bytes.
        this.write_timer = None;
        this.poll_end(Dir::Write, cx).map(|end| {
            Err(match end {
                Ok(StreamEnd::Failed(code)) => XiaError::from_code(code, String::new()),
                Ok(StreamEnd::Unknown) => XiaError::DaemonGone("xiad no longer knows the stream".into()),
                Ok(StreamEnd::Open | StreamEnd::Clean) => XiaError::Closed,
                Err(e) => e,
            }
            .into())
        })
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A connection announced to a listener and not yet taken over.
#[derive(Debug)]
pub(crate) struct Pending {
    token: u64,
    peer: Dag,
    /// The connection that asked to take it over, waiting for the answer.
    attach: Option<Conn>,
}

/// A listening STREAM socket.
#[derive(Debug)]
pub struct XiaListener {
    pub(crate) conn: Conn,
    pub(crate) dag: Dag,
    pub(crate) path: PathBuf,
    pub(crate) timeout: Option<Duration>,
    /// Kept across an accept that is cancelled, for the next one.
    pub(crate) pending: Option<Pending>,
}

impl XiaListener {
    /// The DAG clients connect to.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// How long [`XiaListener::accept`] waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// The next connection, with the peer's DAG, like `Xaccept`. Cancel-safe: a connection
    /// announced to an accept that was dropped (or timed out) goes to the next one. One the peer
    /// reset before it was taken over is skipped.
    pub async fn accept(&mut self) -> Result<(XiaStream, Dag), XiaError> {
        let path = self.path.clone();
        let (conn, pending) = (&mut self.conn, &mut self.pending);
        within(deadline(self.timeout), async move {
            loop {
                let p = match pending {
                    Some(p) => p,
                    None => match conn.recv().await? {
                        (Response::Incoming { token, peer }, _) => {
                            pending.insert(Pending { token, peer, attach: None })
                        }
                        (Response::Error { code, message }, _) => {
                            return Err(XiaError::from_code(code, message))
                        }
                        (m, _) => return Err(unexpected(&m)),
                    },
                };
                if p.attach.is_none() {
                    let mut f = Conn::open(&path).await?;
                    f.send(&Request::Attach { token: p.token }, &[]).await?;
                    p.attach = Some(f);
                }
                let answer = p.attach.as_mut().expect("set above").recv().await;
                let p = pending.take().expect("set above");
                match answer {
                    Ok((Response::Error { code: crate::ipc::ErrorCode::BadHandle, .. }, _)) => {
                        // Gone before it was taken (reset by the peer): the next one.
                        continue;
                    }
                    Ok((Response::Error { code, message }, _)) => {
                        return Err(XiaError::from_code(code, message))
                    }
                    Ok((answer, _)) => {
                        let f = p.attach.expect("set above");
                        return Ok((XiaStream::from_answer(f, answer, path)?, p.peer));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }
}
