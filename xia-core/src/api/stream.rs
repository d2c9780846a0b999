//! STREAM sockets: connections and listeners.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::Sleep;

use super::conn::{deadline, unexpected, within, Conn};
use super::{Xia, XiaError};
use crate::dag::Dag;
use crate::ipc::{ErrorCode, Request, Response};

/// How a stream's socket ended, once asked.
#[derive(Debug, Clone)]
enum End {
    /// Not ended (as far as we know).
    Open,
    /// The peer closed its direction in order: reads return end of file.
    Clean,
    /// Anything else.
    Failed(XiaError),
}

type StatusQuery = Pin<Box<dyn Future<Output = Result<Option<ErrorCode>, XiaError>> + Send>>;

/// A STREAM connection: reliable, ordered bytes both ways (`AsyncRead` + `AsyncWrite`).
/// `shutdown` sends FIN; dropping it closes the connection (FIN after what was written).
///
/// A read returns end of file only when the peer closed its direction in order; a stream that
/// was reset, timed out, became unreachable or lost its daemon fails the read with an I/O error
/// carrying the [`XiaError`] (see [`XiaError::from_io`]). Reads and writes wait for ever
/// unless [`XiaStream::set_read_timeout`] / [`XiaStream::set_write_timeout`] say otherwise.
pub struct XiaStream {
    io: UnixStream,
    /// Stream bytes that arrived with the daemon's answer.
    early: Vec<u8>,
    early_at: usize,
    id: u64,
    local: Dag,
    peer: Dag,
    path: PathBuf,
    end: End,
    /// Asking the daemon why the socket ended.
    query: Option<StatusQuery>,
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
            Response::Connected { id, local, peer } => Ok(XiaStream {
                io: conn.io,
                early: conn.buf,
                early_at: 0,
                id,
                local,
                peer,
                path,
                end: End::Open,
                query: None,
                read_timeout: None,
                write_timeout: None,
                read_timer: None,
                write_timer: None,
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

    /// Why the stream ended, when it failed: asks the daemon.
    pub async fn status(&self) -> Result<Option<ErrorCode>, XiaError> {
        Xia::at(&self.path).stream_status(self.id).await
    }

    /// The daemon closed our socket: find out whether the stream ended in order.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if !matches!(self.end, End::Open) {
            return Poll::Ready(self.end.clone());
        }
        let query = self.query.get_or_insert_with(|| {
            let (path, id) = (self.path.clone(), self.id);
            Box::pin(async move { Xia::at(path).stream_status(id).await })
        });
        let end = match ready!(query.as_mut().poll(cx)) {
            Ok(None) => End::Clean,
            Ok(Some(code)) => End::Failed(XiaError::from_code(code, String::new())),
            Err(e) => End::Failed(e),
        };
        self.query = None;
        self.end = end.clone();
        Poll::Ready(end)
    }
}

/// Arms `timer` for `timeout` (if not armed) and says whether it expired.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, timeout: Option<Duration>, cx: &mut Context<'_>) -> bool {
    let Some(t) = timeout else { return false };
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
    sleep.as_mut().poll(cx).is_ready()
}

fn ended_by_daemon(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
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
        if matches!(this.end, End::Open) && this.query.is_none() {
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
                Poll::Ready(Ok(())) => {} // end of file: how did it end?
                Poll::Ready(Err(e)) if ended_by_daemon(&e) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        match ready!(this.poll_end(cx)) {
            End::Clean => Poll::Ready(Ok(())),
            End::Failed(e) => Poll::Ready(Err(e.into())),
            End::Open => unreachable!("poll_end settles the end"),
        }
    }
}

impl AsyncWrite for XiaStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let End::Failed(e) = &this.end {
            return Poll::Ready(Err(e.clone().into()));
        }
        if this.query.is_none() {
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
                Poll::Ready(Err(e)) if ended_by_daemon(&e) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        // The daemon closed the socket: the stream failed, or ended and takes no more bytes.
        match ready!(this.poll_end(cx)) {
            End::Failed(e) => Poll::Ready(Err(e.into())),
            _ => Poll::Ready(Err(XiaError::Closed.into())),
        }
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
    pub(crate) conn: Conn,
    pub(crate) dag: Dag,
    pub(crate) path: PathBuf,
    pub(crate) timeout: Option<Duration>,
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

    /// The next connection, with the peer's DAG, like `Xaccept`.
    pub async fn accept(&mut self) -> Result<(XiaStream, Dag), XiaError> {
        let path = self.path.clone();
        let conn = &mut self.conn;
        within(deadline(self.timeout), async move {
            let (token, peer) = match conn.recv().await? {
                (Response::Incoming { token, peer }, _) => (token, peer),
                (Response::Error { code, message }, _) => return Err(XiaError::from_code(code, message)),
                (m, _) => return Err(unexpected(&m)),
            };
            let mut f = Conn::open(&path).await?;
            let answer = f.call(&Request::Attach { token }, &[]).await?;
            Ok((XiaStream::from_answer(f, answer, path)?, peer))
        })
        .await
    }
}
