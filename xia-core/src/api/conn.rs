//! One message-mode connection to the daemon, from the application's side.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::XiaError;
use crate::ipc::codec::{self, Prefix, HELLO_LEN, PREFIX_LEN};
use crate::ipc::{Request, Response};

/// Payloads at least this big are read straight into their own buffer, not through the
/// connection's.
const DIRECT_PAYLOAD: usize = 64 << 10;

/// A deadline: `None` waits for ever.
pub(crate) type Deadline = Option<Instant>;

/// The deadline `timeout` from now.
pub(crate) fn deadline(timeout: Option<Duration>) -> Deadline {
    timeout.map(|t| Instant::now() + t)
}

/// Runs `f` until `deadline`: past it, the call fails with [`XiaError::TimedOut`].
pub(crate) async fn within<T>(
    deadline: Deadline,
    f: impl std::future::Future<Output = Result<T, XiaError>>,
) -> Result<T, XiaError> {
    match deadline {
        None => f.await,
        Some(d) => tokio::time::timeout_at(d, f).await.unwrap_or(Err(XiaError::TimedOut)),
    }
}

/// A framed connection to the daemon.
#[derive(Debug)]
pub(crate) struct Conn {
    io: UnixStream,
    /// Bytes read; those from `at` on are not yet taken.
    buf: Vec<u8>,
    at: usize,
    /// Our hello still goes out in front of the first request.
    hello_out: bool,
    /// The daemon's hello is checked.
    hello_in: bool,
    /// A big payload being read into its own buffer: its message, the buffer, bytes filled.
    body: Option<(Response, Vec<u8>, usize)>,
    /// A send was interrupted in the middle of a frame (a deadline dropped it): the framing is
    /// lost, the connection unusable.
    torn: bool,
}

impl Conn {
    /// Connects to the daemon at `path`.
    pub(crate) async fn open(path: &Path) -> Result<Conn, XiaError> {
        let io = UnixStream::connect(path)
            .await
            .map_err(|e| XiaError::DaemonGone(format!("cannot reach xiad at {}: {e}", path.display())))?;
        Ok(Conn { io, buf: Vec::new(), at: 0, hello_out: true, hello_in: false, body: None, torn: false })
    }

    /// The socket and the bytes read beyond the last message (a stream's first bytes, once the
    /// connection is raw).
    pub(crate) fn into_raw(mut self) -> (UnixStream, Vec<u8>) {
        self.buf.drain(..self.at);
        (self.io, self.buf)
    }

    /// Bytes read and not yet taken.
    fn unread(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// Takes `n` bytes; the buffer is compacted only now and then (not once per message).
    fn take(&mut self, n: usize) {
        self.at += n;
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at >= 64 << 10 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
    }

    /// Sends a request and its payload.
    pub(crate) async fn send(&mut self, req: &Request, payload: &[u8]) -> Result<(), XiaError> {
        if self.torn {
            return Err(XiaError::Protocol(
                "an earlier call was given up while writing its request: this connection is \
                 unusable (open another)"
                    .into(),
            ));
        }
        if payload.len() > req.max_payload() {
            return Err(XiaError::TooLarge(format!(
                "{} bytes, at most {} in one {}",
                payload.len(),
                req.max_payload(),
                if matches!(req, Request::ChunkPut) { "chunk" } else { "datagram" }
            )));
        }
        let head = codec::encode_head(req, payload.len());
        let mut first = Vec::with_capacity(HELLO_LEN + head.len() + payload.len().min(4096));
        if self.hello_out {
            first.extend_from_slice(&codec::hello());
        }
        first.extend_from_slice(&head);
        // Small payloads go with their head in one write; big ones are written from where they
        // are, without a copy.
        let small = payload.len() <= 4096;
        if small {
            first.extend_from_slice(payload);
        }
        self.torn = true;
        self.io.write_all(&first).await.map_err(XiaError::socket)?;
        if !small {
            self.io.write_all(payload).await.map_err(XiaError::socket)?;
        }
        self.torn = false;
        self.hello_out = false;
        Ok(())
    }

    /// Reads more bytes into the buffer; an end of file means the daemon is gone.
    async fn fill(&mut self) -> Result<(), XiaError> {
        // `read_buf` appends only what it read, so a receive cancelled by a `select!` or a
        // deadline loses nothing and leaves no garbage behind.
        self.buf.reserve(64 << 10);
        let n = self.io.read_buf(&mut self.buf).await.map_err(XiaError::socket)?;
        if n == 0 {
            return Err(XiaError::DaemonGone("xiad closed the connection".into()));
        }
        Ok(())
    }

    /// The next message and its payload (empty for messages without one). Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Result<(Response, Vec<u8>), XiaError> {
        while !self.hello_in {
            if let Some(h) = self.unread().get(..HELLO_LEN) {
                codec::check_hello(h.try_into().expect("length checked"))?;
                self.take(HELLO_LEN);
                self.hello_in = true;
            } else {
                self.fill().await?;
            }
        }
        loop {
            if let Some((_, data, filled)) = self.body.as_mut() {
                if *filled < data.len() {
                    let n = self.io.read(&mut data[*filled..]).await.map_err(XiaError::socket)?;
                    if n == 0 {
                        return Err(XiaError::DaemonGone("xiad closed the connection".into()));
                    }
                    *filled += n;
                    continue;
                }
                let (m, data, _) = self.body.take().expect("checked");
                return Ok((m, data));
            }
            let unread = self.unread();
            if let Some(p) = Prefix::parse(unread)? {
                let head_end = PREFIX_LEN + p.head;
                if unread.len() >= head_end {
                    let m: Response = codec::decode(&unread[PREFIX_LEN..head_end])?;
                    if p.payload > 0 && !m.carries_payload() {
                        return Err(crate::ipc::IpcError::UnexpectedPayload(p.payload).into());
                    }
                    if unread.len() >= p.frame_len() {
                        let payload = unread[head_end..p.frame_len()].to_vec();
                        self.take(p.frame_len());
                        return Ok((m, payload));
                    }
                    if p.payload >= DIRECT_PAYLOAD {
                        // The rest of a big payload goes straight into the buffer handed out.
                        let mut data = vec![0u8; p.payload];
                        let have = unread.len() - head_end;
                        data[..have].copy_from_slice(&unread[head_end..]);
                        self.buf.clear();
                        self.at = 0;
                        self.body = Some((m, data, have));
                        continue;
                    }
                }
            }
            self.fill().await?;
        }
    }

    /// One request, one answer; an error answer becomes an `Err`.
    pub(crate) async fn call(&mut self, req: &Request, payload: &[u8]) -> Result<Response, XiaError> {
        self.send(req, payload).await?;
        match self.recv().await? {
            (Response::Error { code, message }, _) => Err(XiaError::from_code(code, message)),
            (m, _) => Ok(m),
        }
    }
}

/// The error for an answer that makes no sense where it came.
pub(crate) fn unexpected(m: &Response) -> XiaError {
    XiaError::Protocol(format!("unexpected answer {m:?}"))
}
