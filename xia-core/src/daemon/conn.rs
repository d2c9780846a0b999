//! One application connection, as the daemon sees it: its role, what it sent that is not yet
//! a whole request, and what waits to be written to it.
//!
//! What it sent is kept in storage charged to the daemon's [`InBudget`] before it is allocated:
//! a read-ahead buffer for small messages (freed whenever it is empty), and for a big payload
//! (a chunk) either its own buffer, whole, read straight into (while the budget has room to
//! spare), or pieces that grow with the bytes received, never with the length announced.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use super::budget::InBudget;
use super::inbound::*;
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

#[derive(Debug)]
pub(super) struct Conn {
    id: u64,
    pub(super) sock: UnixStream,
    pub(super) role: Role,
    hello_in: bool,
    /// Bytes read: `inbuf[in_at..]` are not taken yet (in raw mode: stream bytes that came with
    /// the request). Its capacity is charged to the budget; it goes when it is empty.
    inbuf: Vec<u8>,
    in_at: usize,
    /// The capacity of `inbuf` charged.
    in_charge: usize,
    body: Option<Body>,
    /// Waiting for room in the budget: not read until some is given.
    pub(super) starved: bool,
    /// When its unfinished message last progressed, and bytes of it since.
    progress_at: Instant,
    progress_bytes: usize,
    /// When it last took some of its answers.
    pub(super) out_progress_at: Instant,
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
    /// A new connection `id`; our hello is the first thing it gets.
    pub(super) fn new(id: u64, sock: UnixStream, interest: u32, now: Instant) -> Conn {
        let mut out = OutQueue::default();
        out.push_small(&codec::hello());
        Conn {
            id,
            sock,
            role: Role::Fresh,
            hello_in: false,
            inbuf: Vec::new(),
            in_at: 0,
            in_charge: 0,
            body: None,
            starved: false,
            progress_at: now,
            progress_bytes: 0,
            out_progress_at: now,
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

    /// Bytes of the budget it holds.
    pub(super) fn held(&self) -> usize {
        self.in_charge + self.body.as_ref().map_or(0, |b| b.big.charge)
    }

    /// Bytes read and not yet taken.
    pub(super) fn pending_in(&self) -> &[u8] {
        &self.inbuf[self.in_at..]
    }

    fn advance(&mut self, n: usize) {
        self.in_at = (self.in_at + n).min(self.inbuf.len());
        if self.in_at == self.inbuf.len() {
            self.in_at = 0;
            self.inbuf.clear();
        }
    }

    /// Takes `n` bytes of [`Conn::pending_in`]; the storage goes once none are left (a raw
    /// stream reads its socket straight into its buffers from then on).
    pub(super) fn consume_in(&mut self, n: usize, budget: &mut InBudget) {
        self.advance(n);
        if self.inbuf.is_empty() && matches!(self.role, Role::Raw(_)) {
            self.free_inbuf(budget);
        }
    }

    fn free_inbuf(&mut self, budget: &mut InBudget) {
        self.inbuf = Vec::new();
        self.in_at = 0;
        budget.give_back(std::mem::take(&mut self.in_charge));
    }

    /// Moves what is not taken to the front of the read-ahead buffer.
    fn compact(&mut self) {
        if self.in_at > 0 {
            self.inbuf.drain(..self.in_at);
            self.in_at = 0;
        }
    }

    /// Brings the charge in line with the read-ahead buffer's capacity.
    fn recharge(&mut self, budget: &mut InBudget) {
        let cap = self.inbuf.capacity();
        if cap < self.in_charge {
            budget.give_back(self.in_charge - cap);
        } else {
            budget.charge(cap - self.in_charge);
        }
        self.in_charge = cap;
    }

    /// Gives back storage it does not need: the read-ahead buffer once empty, or its room
    /// beyond twice what it holds. After each turn of reading.
    pub(super) fn trim(&mut self, budget: &mut InBudget) {
        let pending = self.inbuf.len() - self.in_at;
        if pending == 0 {
            if self.in_charge > 0 {
                self.free_inbuf(budget);
            }
            return;
        }
        let keep = pending.max(READ_CHUNK);
        if self.inbuf.capacity() > 2 * keep {
            self.compact();
            self.inbuf.shrink_to(keep);
            self.recharge(budget);
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

    /// An error answer, after which the connection is closed; what it sent is dropped at once.
    pub(super) fn fail(&mut self, message: String, budget: &mut InBudget) {
        self.queue(&Response::Error { code: crate::ipc::ErrorCode::BadRequest, message });
        self.close_after_flush = true;
        self.free_inbuf(budget);
        if let Some(b) = self.body.take() {
            budget.give_back(b.big.charge);
        }
        budget.forget(self.id);
        self.starved = false;
    }

    /// The last time its unfinished message progressed, if it has one: a hello or a frame begun
    /// and not whole (stream bytes are not messages).
    pub(super) fn unfinished_since(&self) -> Option<Instant> {
        if self.close_after_flush || matches!(self.role, Role::Raw(_) | Role::Connecting(_)) {
            return None;
        }
        let rest = self.pending_in();
        let partial = if self.body.is_some() {
            true
        } else if rest.is_empty() {
            false
        } else if !self.hello_in {
            rest.len() < HELLO_LEN
        } else {
            match Prefix::parse(rest) {
                Ok(Some(p)) => rest.len() < p.frame_len(),
                Ok(None) => true,
                Err(_) => false,
            }
        };
        partial.then_some(self.progress_at)
    }

    /// Since when it holds room in the budget without progress, if it does: an unfinished message
    /// that gains nothing, or requests it sent that wait because it does not take its answers
    /// (at least `out_limit` bytes of them) and it takes none.
    pub(super) fn stalled_since(&self, out_limit: usize) -> Option<Instant> {
        let unread = self.pending_out() >= out_limit && self.held() > 0;
        match (self.unfinished_since(), unread) {
            (Some(t), true) => Some(t.max(self.out_progress_at)),
            (Some(t), false) => Some(t),
            (None, true) => Some(self.progress_at.max(self.out_progress_at)),
            (None, false) => None,
        }
    }

    /// Its unfinished message counts as progressing now (it was held up by the daemon).
    pub(super) fn touch(&mut self, now: Instant) {
        self.progress_at = now;
        self.progress_bytes = 0;
    }

    /// A request or the hello was taken whole.
    fn completed(&mut self, now: Instant, budget: &mut InBudget) {
        self.touch(now);
        budget.done(self.id);
    }

    /// Room to read into the read-ahead buffer: what there is, or grown if there is too little
    /// (the room asked for, if the budget gives none and there is no room at all).
    fn inbuf_room(&mut self, budget: &mut InBudget) -> Result<usize, usize> {
        let mut room = self.inbuf.capacity() - self.inbuf.len();
        if room < MIN_READ && self.in_at > 0 {
            self.compact();
            room = self.inbuf.capacity() - self.inbuf.len();
        }
        if room >= MIN_READ {
            return Ok(room);
        }
        let (len, cap) = (self.inbuf.len(), self.inbuf.capacity());
        let target = (len + READ_CHUNK).max(2 * cap).min(READ_AHEAD + READ_CHUNK).max(len + MIN_READ);
        let more = target - cap;
        if !budget.take(self.id, self.held(), more) {
            return if room > 0 { Ok(room) } else { Err(more) };
        }
        self.inbuf.reserve_exact(target - len);
        self.in_charge += more;
        self.recharge(budget);
        Ok(self.inbuf.capacity() - len)
    }

    /// Room to read into the big payload being received: the rest of its buffer, in its last
    /// piece, or a new piece (its size asked for, if the budget does not give it).
    fn body_room(&mut self, budget: &mut InBudget) -> Result<usize, usize> {
        let (id, held) = (self.id, self.held());
        let b = self.body.as_mut().expect("a payload being received");
        let left = b.len - b.big.len;
        let bufs = match &mut b.big.store {
            Store::Whole(_) => return Ok(left),
            Store::Pieces(bufs) => bufs,
        };
        let room = bufs.last().map_or(0, |p| p.capacity() - p.len()).min(left);
        if room > 0 {
            return Ok(room);
        }
        let size = b.big.len.clamp(READ_CHUNK, MAX_PIECE).min(left);
        if !budget.take(id, held, size) {
            return Err(size);
        }
        let piece = Vec::with_capacity(size);
        budget.charge(piece.capacity() - size);
        b.big.charge += piece.capacity();
        bufs.push(piece);
        Ok(size)
    }

    /// Reads what the socket has, up to the read-ahead (a big payload into its storage), as far
    /// as the budget gives room.
    pub(super) fn read_in(&mut self, now: Instant, budget: &mut InBudget) -> ReadIn {
        let mut got = 0;
        let found = loop {
            if got >= READ_PER_TURN {
                break ReadIn::default();
            }
            let in_body = self.body.as_ref().is_some_and(|b| b.big.len < b.len);
            let room = if in_body {
                self.body_room(budget)
            } else if self.inbuf.len() - self.in_at < READ_AHEAD {
                self.inbuf_room(budget)
            } else {
                break ReadIn::default();
            };
            let max = match room {
                Ok(max) => max,
                Err(need) => break ReadIn { eof: false, need },
            };
            let r = match self.body.as_mut().filter(|_| in_body) {
                Some(b) => {
                    let r = match &mut b.big.store {
                        Store::Whole(whole) => {
                            let at = b.big.len;
                            let buf = Arc::get_mut(whole).expect("a payload buffer has one owner");
                            read_uninit(&self.sock, &mut buf[at..at + max])
                        }
                        Store::Pieces(bufs) => {
                            read_spare(&self.sock, bufs.last_mut().expect("room in a piece"), max)
                        }
                    };
                    if let Ok(n) = r {
                        b.big.len += n;
                    }
                    r
                }
                None => read_spare(&self.sock, &mut self.inbuf, max),
            };
            match r {
                Ok(0) => break ReadIn { eof: true, need: 0 },
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadIn::default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break ReadIn { eof: true, need: 0 },
            }
            if self.body.as_ref().is_some_and(|b| b.big.len == b.len) {
                // A whole request is here: let it be handled before reading on.
                break ReadIn::default();
            }
        };
        self.progress_bytes += got;
        if self.progress_bytes >= PROGRESS_BYTES {
            self.touch(now);
        }
        found
    }

    /// The next whole request and its payload, if one is here.
    pub(super) fn next_request(
        &mut self,
        now: Instant,
        budget: &mut InBudget,
    ) -> Result<Option<WithPayload>, IpcError> {
        if let Some(b) = self.body.take() {
            if b.big.len < b.len {
                self.body = Some(b);
                return Ok(None);
            }
            // Its charge goes with it.
            self.completed(now, budget);
            return Ok(Some((b.req, Payload::Big(b.big))));
        }
        if !self.hello_in {
            let Some(h) = self.pending_in().get(..HELLO_LEN) else { return Ok(None) };
            codec::check_hello(h.try_into().expect("8 bytes"))?;
            self.hello_in = true;
            self.advance(HELLO_LEN);
            self.completed(now, budget);
        }
        let rest = &self.inbuf[self.in_at..];
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
            self.advance(p.frame_len());
            self.completed(now, budget);
            return Ok(Some((req, Payload::Bytes(payload))));
        }
        if p.payload >= DIRECT_PAYLOAD {
            self.advance(head_end);
            self.compact();
            let have = self.inbuf.len();
            let big = if budget.take_whole(p.payload) {
                // Room to spare: the payload's own buffer, read straight into, taken as it is.
                let mut whole = Arc::<[u8]>::new_uninit_slice(p.payload);
                let dst = Arc::get_mut(&mut whole).expect("fresh");
                for (d, s) in dst[..have].iter_mut().zip(&self.inbuf) {
                    d.write(*s);
                }
                self.free_inbuf(budget);
                Big { store: Store::Whole(whole), len: have, charge: p.payload }
            } else {
                // Memory follows the bytes received: the read-ahead buffer becomes the first
                // piece, with its charge; the rest comes into pieces of its own as it comes.
                let mut first = std::mem::take(&mut self.inbuf);
                let mut charge = std::mem::take(&mut self.in_charge);
                if first.capacity() > p.payload {
                    first.shrink_to(p.payload);
                    budget.give_back(charge - first.capacity());
                    charge = first.capacity();
                }
                let bufs = if first.capacity() > 0 { vec![first] } else { Vec::new() };
                Big { store: Store::Pieces(bufs), len: have, charge }
            };
            self.body = Some(Body { req, big, len: p.payload });
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
    use std::io::Read;

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

    const MIB: usize = 1 << 20;

    fn conn(budget_bytes: usize) -> (UnixStream, Conn, InBudget) {
        let (app, sock) = UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        (app, Conn::new(1, sock, 0, Instant::now()), InBudget::new(budget_bytes))
    }

    fn bytes(p: Payload) -> Vec<u8> {
        p.into_bytes().0.to_vec()
    }

    /// Requests written in pieces of every size come out whole, big payloads through their
    /// own buffer (a roomy budget) or pieces (a tight one); nothing stays charged once they are
    /// taken.
    #[test]
    fn requests_are_reassembled_from_any_cut() {
        for budget_bytes in [256 * MIB, 4 * MIB] {
            let (mut app, mut c, mut budget) = conn(budget_bytes);
            let now = Instant::now();
            let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let mut bytes_in = codec::hello().to_vec();
            bytes_in.extend(codec::encode(&Request::Info, &[]));
            bytes_in.extend(codec::encode(&Request::ChunkPut, &big));
            bytes_in.extend(codec::encode(&Request::ChunkPut, b"small"));
            bytes_in.extend(codec::encode(&Request::ChunkPut, &big[..100_000]));
            let mut got = Vec::new();
            let mut charged = 0;
            for piece in bytes_in.chunks(77_777) {
                app.write_all(piece).unwrap();
                // As the daemon does: read, take every whole request, again while that helps.
                loop {
                    assert_eq!(c.read_in(now, &mut budget), ReadIn::default());
                    let mut any = false;
                    while let Some((req, p)) = c.next_request(now, &mut budget).unwrap() {
                        charged += p.charge();
                        got.push((req, bytes(p)));
                        any = true;
                    }
                    c.trim(&mut budget);
                    assert_eq!(budget.used(), c.held() + charged);
                    if !any {
                        break;
                    }
                }
            }
            assert_eq!(got.len(), 4);
            assert_eq!(got[0].0, Request::Info);
            assert!(got[1].1 == big, "the big payload differs");
            assert_eq!(&got[2].1[..], b"small");
            assert!(got[3].1 == big[..100_000], "the second big payload differs");
            // Their storage held no more than the payloads and some read-ahead.
            assert!(charged <= big.len() + 100_000 + MIB, "{charged}");
            assert_eq!(c.held(), 0, "storage goes once its bytes are taken");
            drop(app);
            assert!(c.read_in(now, &mut budget).eof, "end of file");
        }
    }

    /// A message announcing 16 MiB and sending 100 kB holds about what it sent once the budget
    /// is tight; with room to spare, a buffer of the length announced.
    #[test]
    fn memory_follows_bytes_received_not_the_length_announced() {
        let now = Instant::now();
        let mut b = codec::hello().to_vec();
        b.extend(codec::encode_head(&Request::ChunkPut, 16 * MIB));
        b.extend(vec![7u8; 100_000]);
        // Half of what the budget has beyond shares is less than 16 MiB: pieces.
        let (mut app, mut c, mut budget) = conn(32 * MIB);
        app.write_all(&b).unwrap();
        for _ in 0..4 {
            c.read_in(now, &mut budget);
            assert!(c.next_request(now, &mut budget).unwrap().is_none());
        }
        c.trim(&mut budget);
        assert!(c.held() >= 100_000 && c.held() <= 300_000, "{} bytes held", c.held());
        assert_eq!(budget.used(), c.held());
        assert!(c.unfinished_since().is_some());
        // Failed (evicted), it gives everything back at once.
        c.fail("gone".into(), &mut budget);
        assert_eq!((c.held(), budget.used()), (0, 0));
        assert!(c.unfinished_since().is_none());
        // Room to spare: its own buffer, whole.
        let (mut app, mut c, mut budget) = conn(256 * MIB);
        app.write_all(&b).unwrap();
        for _ in 0..4 {
            c.read_in(now, &mut budget);
            assert!(c.next_request(now, &mut budget).unwrap().is_none());
        }
        c.trim(&mut budget);
        assert_eq!((c.held(), budget.used()), (16 * MIB, 16 * MIB));
        // Buffers of announced lengths take half of the budget beyond shares at most.
        let mut held = vec![c];
        for _ in 0..10 {
            let (mut app, mut c, _) = conn(0);
            app.write_all(&b).unwrap();
            c.read_in(now, &mut budget);
            assert!(c.next_request(now, &mut budget).unwrap().is_none());
            c.trim(&mut budget);
            held.push(c);
        }
        assert!(budget.used() <= 112 * MIB + 10 * 300_000, "{}", budget.used());
        for mut c in held {
            c.fail("gone".into(), &mut budget);
        }
        assert_eq!(budget.used(), 0);
    }

    /// Without room, reading stops and says how much it needs; given room, the message
    /// completes whole.
    #[test]
    fn a_connection_without_room_waits_and_completes_once_given_some() {
        let (mut app, mut c, mut budget) = conn(8 * MIB);
        let now = Instant::now();
        // Others hold the bulk of the budget, one of them as the finisher.
        assert!(budget.take(50, 64 << 10, 7 * MIB - (64 << 10)));
        assert!(budget.take(51, 64 << 10, MIB));
        let data: Vec<u8> = (0..2 * MIB).map(|i| (i * 7 % 253) as u8).collect();
        let mut b = codec::hello().to_vec();
        b.extend(codec::encode(&Request::ChunkPut, &data));
        let writer = std::thread::spawn(move || {
            app.write_all(&b).unwrap();
            app
        });
        // Its share of the budget is all it gets: it reads a little, then needs more.
        let mut need = 0;
        for _ in 0..100 {
            let r = c.read_in(now, &mut budget);
            assert!(c.next_request(now, &mut budget).unwrap().is_none());
            if r.need > 0 {
                need = r.need;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(need > 0, "reading went on past the budget");
        assert!(c.held() <= 64 << 10, "{}", c.held());
        budget.wait(1, c.held(), need);
        assert!(budget.ready().is_empty(), "no room freed yet");
        // The finisher leaves: this connection may finish.
        budget.forget(51);
        budget.give_back(MIB);
        assert_eq!(budget.ready(), vec![1]);
        let mut got = None;
        while got.is_none() {
            let r = c.read_in(now, &mut budget);
            assert_eq!(r.need, 0);
            got = c.next_request(now, &mut budget).unwrap();
        }
        let (req, p) = got.unwrap();
        assert_eq!(req, Request::ChunkPut);
        let charge = p.charge();
        assert!(p.into_bytes().0[..] == data[..], "payload differs");
        budget.give_back(charge);
        c.trim(&mut budget);
        assert_eq!(budget.used(), 7 * MIB - (64 << 10));
        drop(writer.join().unwrap());
    }

    #[test]
    fn unfinished_messages_are_told_apart_from_whole_ones() {
        let (mut app, mut c, mut budget) = conn(8 * MIB);
        let now = Instant::now();
        assert!(c.unfinished_since().is_none());
        app.write_all(&codec::hello()[..5]).unwrap();
        c.read_in(now, &mut budget);
        assert!(matches!(c.next_request(now, &mut budget), Ok(None)));
        assert!(c.unfinished_since().is_some_and(|t| t <= now));
        let mut b = codec::hello()[5..].to_vec();
        let info = codec::encode(&Request::Info, &[]);
        b.extend(&info);
        b.extend(&info[..3]);
        app.write_all(&b).unwrap();
        let later = now + std::time::Duration::from_secs(1);
        c.read_in(later, &mut budget);
        assert!(matches!(c.next_request(later, &mut budget), Ok(Some((Request::Info, _)))));
        // A request taken is progress; the frame begun after it is unfinished.
        assert_eq!(c.unfinished_since(), Some(later));
        app.write_all(&info[3..]).unwrap();
        c.read_in(later, &mut budget);
        assert!(c.unfinished_since().is_none(), "a whole request waiting is not unfinished");
        assert!(matches!(c.next_request(later, &mut budget), Ok(Some((Request::Info, _)))));
        c.trim(&mut budget);
        assert_eq!((c.held(), budget.used()), (0, 0));
    }

    /// Requests held while the application takes none of its answers: stalled too.
    #[test]
    fn requests_behind_unread_answers_count_as_stalled() {
        let (mut app, mut c, mut budget) = conn(8 * MIB);
        let now = Instant::now();
        let mut b = codec::hello().to_vec();
        b.extend(codec::encode(&Request::Info, &[]));
        app.write_all(&b).unwrap();
        c.read_in(now, &mut budget);
        // Its answers pile up (past a limit of 1000 bytes here) while its request waits.
        c.queue_owned(&Response::Ok, vec![0; 5000]);
        assert!(c.held() > 0);
        assert!(c.unfinished_since().is_none(), "a whole request is not unfinished");
        assert!(c.stalled_since(1000).is_some());
        assert!(c.stalled_since(1 << 20).is_none(), "below the limit: not held up by its answers");
        // Once it has nothing buffered, it holds no room: not stalled.
        assert!(matches!(c.next_request(now, &mut budget), Ok(Some((Request::Info, _)))));
        c.trim(&mut budget);
        assert_eq!(c.held(), 0);
        assert!(c.stalled_since(1000).is_none());
    }

    #[test]
    fn a_bad_hello_or_frame_is_an_error() {
        let (mut app, mut c, mut budget) = conn(8 * MIB);
        let now = Instant::now();
        app.write_all(b"GET / HTTP/1.0\r\n").unwrap();
        c.read_in(now, &mut budget);
        assert!(matches!(c.next_request(now, &mut budget), Err(IpcError::BadMagic)));
        let (mut app, mut c, mut budget) = conn(8 * MIB);
        app.write_all(&codec::hello()).unwrap();
        app.write_all(&[0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0]).unwrap();
        c.read_in(now, &mut budget);
        assert!(matches!(c.next_request(now, &mut budget), Err(IpcError::BadFrame { .. })));
    }
}
