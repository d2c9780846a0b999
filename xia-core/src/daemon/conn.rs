//! One application connection, as the daemon sees it: its role, what it sent that is not yet
//! a whole request, and what waits to be written to it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::host::Handle;
use crate::ipc::codec::{self, IpcError, Prefix, HELLO_LEN, PREFIX_LEN};
use crate::ipc::{Request, Response};

/// What a connection is for, decided by its first request that gives it a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Fresh,
    /// A stream being opened; raw once connected.
    Connecting(Handle),
    /// A stream's bytes, raw both ways.
    Raw(Handle),
    Listener(Handle),
    /// A datagram socket's receiving half.
    Dgram(Handle),
    /// A datagram socket's sending half.
    DgramSend(Handle),
    Ping(Handle),
    Chunks(Handle),
    Events,
}

/// Payloads at least this big are read straight into the buffer they end up in.
const DIRECT_PAYLOAD: usize = 64 << 10;
/// Bytes read ahead from an application before its requests are handled (a frame that does
/// not fit is read straight into its own buffer).
const READ_AHEAD: usize = 1 << 20;
/// Room made for each read.
const READ_CHUNK: usize = 64 << 10;

/// A request and its payload.
pub(super) type WithPayload = (Request, Arc<[u8]>);

/// A big payload being read into its own buffer.
#[derive(Debug)]
struct Body {
    req: Request,
    data: Arc<[u8]>,
    filled: usize,
}

/// A zeroed buffer of `n` bytes held by one owner, to read a payload into: the chunk store
/// keeps it as it is, without a copy.
fn payload_buffer(n: usize) -> Arc<[u8]> {
    let zeroed = Arc::<[u8]>::new_zeroed_slice(n);
    // SAFETY: every byte is initialized (to zero), which is a valid u8.
    unsafe { zeroed.assume_init() }
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) sock: UnixStream,
    pub(super) role: Role,
    hello_in: bool,
    /// Storage for bytes read: `in_at..in_end` are read and not yet taken (in raw mode: stream
    /// bytes that came with the request). Zeroed once when it grows, not at every read.
    inbuf: Vec<u8>,
    in_at: usize,
    in_end: usize,
    body: Option<Body>,
    pub(super) out: OutQueue,
    /// The application sent EOF (raw mode) or closed.
    pub(super) read_closed: bool,
    /// We shut down our writing side (peer FIN delivered).
    pub(super) write_shut: bool,
    /// Writing to the application failed: it closed its socket.
    pub(super) write_dead: bool,
    /// The socket is in the epoll set (it leaves on HUP, which cannot be masked).
    pub(super) registered: bool,
    /// Close once `out` is flushed.
    pub(super) close_after_flush: bool,
    pub(super) interest: u32,
    /// Chunks published under a lease, with their references: removed when it closes.
    pub(super) leased: Option<std::collections::HashMap<crate::xid::Xid, u32>>,
    /// What it publishes may be kept by nodes on the way ([`Request::ChunkNoStore`] says no).
    ///
    /// [`Request::ChunkNoStore`]: crate::ipc::Request::ChunkNoStore
    pub(super) policy: crate::transport::chunk::CachePolicy,
    /// A chunk it publishes is being named (hashed): its next requests wait for that answer.
    pub(super) awaiting_hash: bool,
}

impl Conn {
    /// A new connection; our hello is the first thing it gets.
    pub(super) fn new(sock: UnixStream, interest: u32) -> Conn {
        let mut out = OutQueue::default();
        out.push_small(&codec::hello());
        Conn {
            sock,
            role: Role::Fresh,
            hello_in: false,
            inbuf: Vec::new(),
            in_at: 0,
            in_end: 0,
            body: None,
            out,
            read_closed: false,
            write_shut: false,
            write_dead: false,
            registered: true,
            close_after_flush: false,
            interest,
            leased: None,
            policy: Default::default(),
            awaiting_hash: false,
        }
    }

    pub(super) fn pending_out(&self) -> usize {
        self.out.len()
    }

    /// Bytes read and not yet taken.
    pub(super) fn pending_in(&self) -> &[u8] {
        &self.inbuf[self.in_at..self.in_end]
    }

    /// Takes `n` bytes of [`Conn::pending_in`]; the storage goes once none are left (a raw
    /// stream reads its socket straight into its buffers from then on).
    pub(super) fn consume_in(&mut self, n: usize) {
        self.in_at = (self.in_at + n).min(self.in_end);
        if self.in_at == self.in_end {
            self.in_at = 0;
            self.in_end = 0;
            if matches!(self.role, Role::Raw(_)) {
                self.inbuf = Vec::new();
            }
        }
    }

    /// Queues a message without payload.
    pub(super) fn queue(&mut self, m: &Response) {
        self.out.push_small(&codec::encode(m, &[]));
    }

    /// Queues a message and a small payload (copied).
    pub(super) fn queue_with(&mut self, m: &Response, payload: &[u8]) {
        self.out.push_small(&codec::encode(m, payload));
    }

    /// Queues a message and a big payload, which is written from its own buffer.
    pub(super) fn queue_owned(&mut self, m: &Response, payload: Vec<u8>) {
        self.out.push_small(&codec::encode_head(m, payload.len()));
        self.out.push_owned(payload);
    }

    /// An error answer, after which the connection is closed.
    pub(super) fn fail(&mut self, message: String) {
        self.queue(&Response::Error { code: crate::ipc::ErrorCode::BadRequest, message });
        self.close_after_flush = true;
        self.in_at = 0;
        self.in_end = 0;
        self.body = None;
    }

    /// Reads what the socket has, up to the read-ahead (a big payload straight into its
    /// buffer). True at the end of the application's bytes (end of file or a broken socket).
    pub(super) fn read_in(&mut self) -> bool {
        if self.in_at > 0 {
            self.inbuf.copy_within(self.in_at..self.in_end, 0);
            self.in_end -= self.in_at;
            self.in_at = 0;
        }
        loop {
            let r = if let Some(b) = self.body.as_mut().filter(|b| b.filled < b.data.len()) {
                let buf = Arc::get_mut(&mut b.data).expect("a payload buffer has one owner");
                match self.sock.read(&mut buf[b.filled..]) {
                    Ok(n) => {
                        b.filled += n;
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            } else if self.in_end < READ_AHEAD {
                if self.inbuf.len() < self.in_end + READ_CHUNK {
                    self.inbuf.resize(self.in_end + READ_CHUNK, 0);
                }
                let r = self.sock.read(&mut self.inbuf[self.in_end..]);
                if let Ok(n) = r {
                    self.in_end += n;
                }
                r
            } else {
                return false;
            };
            match r {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
            if self.body.as_ref().is_some_and(|b| b.filled == b.data.len()) {
                // A whole request is here: let it be handled before reading on.
                return false;
            }
        }
    }

    /// The next whole request and its payload, if one is here.
    pub(super) fn next_request(&mut self) -> Result<Option<WithPayload>, IpcError> {
        if let Some(b) = self.body.take() {
            if b.filled < b.data.len() {
                self.body = Some(b);
                return Ok(None);
            }
            return Ok(Some((b.req, b.data)));
        }
        if !self.hello_in {
            let Some(h) = self.pending_in().get(..HELLO_LEN) else { return Ok(None) };
            codec::check_hello(h.try_into().expect("8 bytes"))?;
            self.hello_in = true;
            self.consume_in(HELLO_LEN);
        }
        let rest = &self.inbuf[self.in_at..self.in_end];
        let Some(p) = Prefix::parse(rest)? else { return Ok(None) };
        let head_end = PREFIX_LEN + p.head;
        if rest.len() < head_end {
            return Ok(None);
        }
        let req: Request = codec::decode(&rest[PREFIX_LEN..head_end])?;
        // Checked before anything is allocated for it.
        if p.payload > req.max_payload() {
            return Err(IpcError::UnexpectedPayload(p.payload));
        }
        if rest.len() >= p.frame_len() {
            let payload = Arc::from(&rest[head_end..p.frame_len()]);
            self.consume_in(p.frame_len());
            return Ok(Some((req, payload)));
        }
        if p.payload >= DIRECT_PAYLOAD {
            // The rest goes straight into the buffer the payload ends up in.
            let mut data = payload_buffer(p.payload);
            let have = rest.len() - head_end;
            Arc::get_mut(&mut data).expect("fresh")[..have].copy_from_slice(&rest[head_end..]);
            self.in_at = 0;
            self.in_end = 0;
            self.body = Some(Body { req, data, filled: have });
        }
        Ok(None)
    }
}

/// Bytes waiting to be written to an application: small messages share buffers, big payloads
/// (fetched chunks) are queued as they are, without a copy, and written with `writev`.
#[derive(Debug, Default)]
pub(super) struct OutQueue {
    bufs: VecDeque<Vec<u8>>,
    /// Bytes of the front buffer already written.
    at: usize,
    len: usize,
}

impl OutQueue {
    /// Buffers of small messages grow up to this before a new one starts.
    const SHARE: usize = 64 << 10;

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push_small(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        if let Some(back) = self.bufs.back_mut().filter(|b| b.len() + bytes.len() <= Self::SHARE) {
            back.extend_from_slice(bytes);
            return;
        }
        self.bufs.push_back(bytes.to_vec());
    }

    pub(super) fn push_owned(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.bufs.push_back(bytes);
        }
    }

    pub(super) fn clear(&mut self) {
        *self = OutQueue::default();
    }

    /// Writes as much as the socket takes.
    pub(super) fn write_to(&mut self, sock: &mut UnixStream) -> io::Result<()> {
        while self.len > 0 {
            let mut iov = [io::IoSlice::new(&[]); 16];
            let mut k = 0;
            for (i, b) in self.bufs.iter().take(iov.len()).enumerate() {
                iov[i] = io::IoSlice::new(if i == 0 { &b[self.at..] } else { b });
                k = i + 1;
            }
            let mut n = match sock.write_vectored(&iov[..k]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.len -= n;
            while n > 0 {
                let front = self.bufs.front().map_or(0, |b| b.len() - self.at);
                if n >= front {
                    n -= front;
                    self.bufs.pop_front();
                    self.at = 0;
                } else {
                    self.at += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_queue_writes_shared_and_owned_buffers_in_order_across_partial_writes() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        for i in 0..40u32 {
            let small = vec![i as u8; 1000 + i as usize];
            q.push_small(&small);
            want.extend_from_slice(&small);
            if i % 7 == 0 {
                let big: Vec<u8> = (0..(3 << 20) + i as usize).map(|k| (k * 31 + i as usize) as u8).collect();
                want.extend_from_slice(&big);
                q.push_owned(big);
            }
        }
        q.push_owned(Vec::new());
        assert_eq!(q.len(), want.len());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 100_000];
        while q.len() > 0 {
            q.write_to(&mut a).unwrap();
            // The peer reads a little at a time: the queue sees many partial writes.
            let n = b.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        drop(a);
        b.read_to_end(&mut got).unwrap();
        assert!(got == want, "bytes differ or are out of order");
    }

    /// Requests written in pieces of every size come out whole, big payloads through their
    /// own buffer.
    #[test]
    fn requests_are_reassembled_from_any_cut() {
        let (mut app, sock) = UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut c = Conn::new(sock, 0);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = codec::hello().to_vec();
        bytes.extend(codec::encode(&Request::Info, &[]));
        bytes.extend(codec::encode(&Request::ChunkPut, &big));
        bytes.extend(codec::encode(&Request::ChunkPut, b"small"));
        let mut got = Vec::new();
        for piece in bytes.chunks(7777) {
            app.write_all(piece).unwrap();
            // As the daemon does: read, take every whole request, again while that helps.
            loop {
                assert!(!c.read_in());
                let mut any = false;
                while let Some(r) = c.next_request().unwrap() {
                    got.push(r);
                    any = true;
                }
                if !any {
                    break;
                }
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, Request::Info);
        assert_eq!(&got[1].1[..], &big[..]);
        assert_eq!(&got[2].1[..], b"small");
        drop(app);
        assert!(c.read_in(), "end of file");
    }

    #[test]
    fn a_bad_hello_or_frame_is_an_error() {
        let (mut app, sock) = UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut c = Conn::new(sock, 0);
        app.write_all(b"GET / HTTP/1.0\r\n").unwrap();
        c.read_in();
        assert_eq!(c.next_request(), Err(IpcError::BadMagic));
        let (mut app, sock) = UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut c = Conn::new(sock, 0);
        app.write_all(&codec::hello()).unwrap();
        app.write_all(&[0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0]).unwrap();
        c.read_in();
        assert!(matches!(c.next_request(), Err(IpcError::BadFrame { .. })));
    }
}
