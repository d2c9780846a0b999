//! Applications' side of the daemon: accepting their connections, their requests, and the
//! host's events routed to the applications they concern.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, Role};
use super::hasher::{Hashed, Job};
use super::inbound::Payload;
use super::Daemon;
use crate::dag::Dag;
use crate::host::{Handle, HostError, HostEvent};
use crate::ipc::{ErrorCode, Event, HostInfo, Request, Response, StreamEnd};
use crate::link::Link;
use crate::transport::chunk::CachePolicy;
use crate::xid::Xid;

/// Outgoing message bytes buffered for an application before the daemon stops reading its
/// host queue (datagrams then wait, and are dropped by the host's own bounded queue).
pub(super) const OUTBUF_SOFT_LIMIT: usize = 8 << 20;
/// Remembered outcomes of finished streams.
const STATUS_MEMORY: usize = 4096;
/// How long the daemon stops accepting applications after accept failed (out of descriptors).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Requests handled per connection per loop turn.
const REQUESTS_PER_TURN: usize = 64;

fn error(e: &HostError) -> Response {
    Response::Error { code: ErrorCode::from(e), message: e.to_string() }
}

fn bad_request(message: &str) -> Response {
    Response::Error { code: ErrorCode::BadRequest, message: message.into() }
}

/// A random token nobody can guess, not in `taken` (from the OS; the daemon's own generator
/// if the OS has none to give).
fn token(rng: &mut crate::rng::Rng, taken: impl Fn(u64) -> bool) -> u64 {
    loop {
        let mut b = [0u8; 8];
        let t = match getrandom::getrandom(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => rng.next_u64(),
        };
        if t != 0 && !taken(t) {
            return t;
        }
    }
}

impl<L: Link> Daemon<L> {
    pub(super) fn accept_apps(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    // Our hello waits to be written: writability too.
                    let interest = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32;
                    if self.epoll.ctl(libc::EPOLL_CTL_ADD, sock.as_raw_fd(), interest, id).is_err() {
                        continue;
                    }
                    self.conns.insert(id, Conn::new(id, sock, interest, Instant::now()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors (or the like): the listener stays readable, so it
                    // leaves epoll for a while instead of waking the loop in a spin.
                    tracing::warn!("accept: {e}; not accepting for {ACCEPT_PAUSE:?}");
                    self.pause_listener();
                    return;
                }
            }
        }
    }

    pub(super) fn conn_ready(&mut self, id: u64, flags: u32) {
        let Some(c) = self.conns.get(&id) else { return };
        if flags & libc::EPOLLERR as u32 != 0 {
            // The socket broke: whatever it carried is aborted.
            self.drop_conn(id, true);
            return;
        }
        if let Role::Raw(_) = c.role {
            if flags & libc::EPOLLHUP as u32 != 0 {
                // The application closed its socket. What it wrote before is still to be read
                // and sent (a close is a FIN after the data, not an abort); HUP cannot be
                // masked, so the socket leaves epoll and the stream's own events drive the
                // rest.
                self.deregister(id);
            }
            // Raw streams move bytes in the pump.
            self.dirty.insert(id);
            return;
        }
        if flags & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | libc::EPOLLHUP as u32) != 0 {
            self.read_messages(id);
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.flush_conn(id);
        }
        if flags & libc::EPOLLHUP as u32 != 0
            && self.conns.get(&id).is_some_and(|c| !matches!(c.role, Role::Raw(_)))
        {
            self.drop_conn(id, false);
        }
    }

    /// Reads and handles an application's requests: at most a turn's worth, and none while
    /// its answers pile up unread (it is read again once they drain): one application cannot
    /// hold the loop or make the daemon queue answers without bound. One that finds no room in
    /// the budget for what it sends is not read until room frees ([`super::budget`]).
    pub(super) fn read_messages(&mut self, id: u64) {
        let now = Instant::now();
        let mut eof = false;
        let mut turn = REQUESTS_PER_TURN;
        // Room it needed and did not get, with nothing to handle meanwhile.
        let mut stuck = 0;
        'turn: loop {
            let Some(c) = self.conns.get_mut(&id) else { return };
            if c.close_after_flush || c.starved || matches!(c.role, Role::Raw(_) | Role::Connecting(_)) {
                break;
            }
            if c.pending_out() >= OUTBUF_SOFT_LIMIT || c.awaiting_hash {
                break;
            }
            let r = c.read_in(now, &mut self.budget);
            eof |= r.eof;
            let mut handled = false;
            // Every whole request, in order (a switch to raw mode stops there: the bytes after
            // it belong to the stream).
            loop {
                let Some(c) = self.conns.get_mut(&id) else { return };
                if c.close_after_flush
                    || matches!(c.role, Role::Raw(_) | Role::Connecting(_))
                    || c.pending_out() >= OUTBUF_SOFT_LIMIT
                    || c.awaiting_hash
                {
                    break 'turn;
                }
                if turn == 0 {
                    // More may wait in its buffer, which epoll does not see: another turn.
                    self.dirty.insert(id);
                    break 'turn;
                }
                match c.next_request(now, &mut self.budget) {
                    Ok(Some((req, payload))) => {
                        handled = true;
                        turn -= 1;
                        self.request(id, req, payload);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("application connection {id}: {e}");
                        c.fail(e.to_string(), &mut self.budget);
                        break 'turn;
                    }
                }
            }
            // A big payload just started: read on into its buffer while the socket has bytes.
            if eof || !handled {
                stuck = r.need;
                break;
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            // Storage it does not need any more goes back to the budget.
            c.trim(&mut self.budget);
            if stuck > 0 && !eof && !c.close_after_flush {
                // Not read (not even woken for) until room frees.
                c.starved = true;
                self.budget.wait(id, c.held(), stuck);
            }
            if c.starved || c.awaiting_hash {
                // Its socket's bytes wait: being woken for them would only spin the loop. Read
                // again once room frees, or once the chunk is named (its answer is written then).
                super::pump::set_interest(&self.epoll, c, id, false, c.pending_out() > 0);
            }
        }
        if eof {
            match self.conns.get(&id).map(|c| c.role) {
                // The stream's pump sends what came with the request, then FIN.
                Some(Role::Raw(_) | Role::Connecting(_)) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.read_closed = true;
                    }
                    self.dirty.insert(id);
                }
                Some(_) => self.drop_conn(id, false),
                None => {}
            }
        }
    }

    pub(super) fn reply(&mut self, id: u64, m: &Response) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.queue(m);
        }
    }

    fn set_role(&mut self, id: u64, role: Role) -> bool {
        let Some(c) = self.conns.get_mut(&id) else { return false };
        if c.role != Role::Fresh {
            c.queue(&bad_request("connection already has a role"));
            return false;
        }
        c.role = role;
        true
    }

    /// Gives connection `id` the role `role` over host object `h`, or closes `h` if it cannot.
    fn take_role(&mut self, id: u64, role: Role, h: Handle) -> bool {
        if self.set_role(id, role) {
            self.owners.insert(h, id);
            true
        } else {
            self.host.close(h);
            false
        }
    }

    pub(super) fn host_info(&self) -> HostInfo {
        HostInfo {
            hid: self.host.hid(),
            dag: self.host.dag(),
            ad: self.host.ad(),
            gateway: self.host.gateway(),
            registered: self.host.registration_receipt().is_some(),
            name_server: self.host.name_server(),
            mtu: self.link.mtu() as u32,
            link_up: self.link.is_up(),
        }
    }

    fn request(&mut self, id: u64, req: Request, payload: Payload) {
        let now = Instant::now();
        let role = self.conns.get(&id).map(|c| c.role);
        // Only chunks are big: one that came in pieces is made one buffer on the hashing thread.
        // Anything else (none is that big today) here.
        let (payload, chunk) = match payload {
            Payload::Bytes(b) => (b, None),
            p @ Payload::Big(_) if matches!(req, Request::ChunkPut) => (Arc::from(&[][..]), Some(p)),
            p => {
                let (b, charge) = p.into_bytes();
                self.budget.give_back(charge);
                (b, None)
            }
        };
        match req {
            Request::Connect { dst } => match self.host.connect(now, dst) {
                Ok(h) => {
                    if self.take_role(id, Role::Connecting(h), h) {
                        // Nothing is read from it until the stream is up (what follows the
                        // request is the stream's): interest as a connecting socket's.
                        self.flush_conn(id);
                    } else {
                        self.host.abort(h);
                    }
                }
                Err(e) => self.reply(id, &error(&e)),
            },
            Request::Listen { sid } => {
                let sid = sid.unwrap_or_else(|| {
                    let mut b = [0u8; 20];
                    if getrandom::getrandom(&mut b).is_err() {
                        self.rng.fill(&mut b);
                    }
                    Xid::new(crate::xid::Principal::Sid, b)
                });
                match self.host.listen(sid) {
                    Ok(h) => {
                        if self.take_role(id, Role::Listener(h), h) {
                            let dag = self.host.service_dag(sid);
                            self.reply(id, &Response::Listening { dag });
                        }
                    }
                    Err(e) => self.reply(id, &error(&e)),
                }
            }
            Request::Attach { token } => {
                let Some(&h) = self.tokens.get(&token) else {
                    self.reply(
                        id,
                        &Response::Error {
                            code: ErrorCode::BadHandle,
                            message: "no such incoming stream".into(),
                        },
                    );
                    return;
                };
                // A connection with a role already cannot take it: the stream stays unclaimed.
                if self.set_role(id, Role::Raw(h)) {
                    let listener = self.unclaimed.get(&h).map(|&(l, _)| l);
                    self.unclaim(h);
                    self.owners.insert(h, id);
                    let local = self.stream_local(h);
                    let peer = self.host.stream_peer(h).cloned().unwrap_or_else(|| local.clone());
                    self.reply(id, &Response::Connected { id: h ^ self.instance, local, peer });
                    self.dirty.insert(id);
                    // Room for the next connection waiting in the host's backlog.
                    if let Some(Role::Listener(l)) = listener.and_then(|c| self.conns.get(&c)).map(|c| c.role)
                    {
                        self.offer_incoming(l);
                    }
                }
            }
            Request::DgramBind { sid } => match self.host.dgram_bind(sid) {
                Ok((h, sid)) => {
                    if self.take_role(id, Role::Dgram(h), h) {
                        let dag = self.host.service_dag(sid);
                        let max = self.host.dgram_max(h, &dag).unwrap_or(0) as u32;
                        let t = token(&mut self.rng, |t| self.dgram_tokens.contains_key(&t));
                        self.dgram_tokens.insert(t, h);
                        self.dgram_holders.insert(h, 1);
                        self.reply(id, &Response::Bound { dag, max, token: t });
                    }
                }
                Err(e) => self.reply(id, &error(&e)),
            },
            Request::DgramSender { token } => {
                let Some(&h) = self.dgram_tokens.get(&token) else {
                    self.reply(
                        id,
                        &Response::Error {
                            code: ErrorCode::BadHandle,
                            message: "no such datagram socket".into(),
                        },
                    );
                    return;
                };
                if self.set_role(id, Role::DgramSend(h)) {
                    *self.dgram_holders.entry(h).or_insert(0) += 1;
                    self.reply(id, &Response::Ok);
                }
            }
            Request::SendTo { dst } => match role {
                Some(Role::DgramSend(h) | Role::Dgram(h)) => {
                    match self.host.dgram_send(now, h, &dst, &payload) {
                        Ok(()) => self.reply(id, &Response::Ok),
                        Err(e) => self.reply(id, &error(&e)),
                    }
                }
                _ => self.reply(id, &bad_request("not a datagram socket")),
            },
            // Named on the hashing thread; the connection's next requests wait for the answer
            // (answers go in the order of the requests).
            Request::ChunkPut => {
                let data = chunk.unwrap_or(Payload::Bytes(payload));
                match self.host.chunk_check_size(data.len()) {
                    Ok(()) => {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.awaiting_hash = true;
                        }
                        self.hash(now, Job::Name { conn: id, data });
                    }
                    Err(e) => {
                        self.budget.give_back(data.charge());
                        self.reply(id, &error(&e));
                    }
                }
            }
            Request::ChunkLease => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.leased.get_or_insert_with(Default::default);
                }
                self.reply(id, &Response::Ok);
            }
            Request::ChunkNoStore => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.policy = CachePolicy::NoStore;
                }
                self.reply(id, &Response::Ok);
            }
            Request::ChunkRemove { cid } => {
                let last = match self.conns.get_mut(&id).and_then(|c| c.leased.as_mut()) {
                    // A leased publication goes with its last reference.
                    Some(refs) => match refs.get_mut(&cid) {
                        Some(n) if *n > 1 => {
                            *n -= 1;
                            false
                        }
                        Some(_) => {
                            refs.remove(&cid);
                            true
                        }
                        None => false,
                    },
                    None => true,
                };
                if last {
                    self.host.chunk_remove(&cid);
                }
                self.reply(id, &Response::Ok);
            }
            Request::ChunkFetch { tag, cid, dag, len } => match self.chunk_owner(id, role) {
                Some(o) => {
                    let len = len.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
                    self.host.chunk_fetch(now, o, cid, dag, len, tag);
                }
                None => self.reply(id, &bad_request("not a chunk client")),
            },
            Request::ChunkCancel { tag } => match role {
                Some(Role::Chunks(o)) => {
                    self.host.chunk_cancel(o, tag);
                    self.reply(id, &Response::Cancelled { tag });
                }
                Some(Role::Fresh) => self.reply(id, &Response::Cancelled { tag }),
                _ => self.reply(id, &bad_request("not a chunk client")),
            },
            Request::PingOpen => {
                let h = self.host.ping_open();
                if self.take_role(id, Role::Ping(h), h) {
                    self.reply(id, &Response::Ok);
                }
            }
            Request::PingSend { dst, seq } => match role {
                Some(Role::Ping(h)) => {
                    if let Err(e) = self.host.ping_send(now, h, &dst, seq, &payload) {
                        self.reply(id, &error(&e));
                    }
                }
                _ => self.reply(id, &bad_request("not a pinger")),
            },
            Request::SignName { name, dag, seq, ttl_ms } => {
                let answer = match name.parse::<crate::wire::names::Name>() {
                    Err(e) => bad_request(&format!("{name}: {e}")),
                    Ok(name) => match self.host.sign_name(name, dag, seq, ttl_ms) {
                        Ok(r) => Response::SignedName(r.to_bytes()),
                        Err(e) => error(&e),
                    },
                };
                self.reply(id, &answer);
            }
            Request::PatchRoute { router, lifetime_ms } => {
                let lifetime = Duration::from_millis(u64::from(lifetime_ms));
                match self.host.send_route_patch(now, &router, lifetime) {
                    Ok(()) => self.reply(id, &Response::Ok),
                    Err(e) => self.reply(id, &error(&e)),
                }
            }
            Request::Info => {
                let info = self.host_info();
                self.reply(id, &Response::Info(info));
            }
            Request::Stats => {
                let stats = self.stats();
                self.reply(id, &Response::Stats(stats));
            }
            Request::StreamStatus { id: sid } => {
                // Ids carry this daemon's instance: one restarted on the same socket knows none
                // of its predecessor's streams, and says so.
                let h = sid ^ self.instance;
                let end = match self.status.get(&h) {
                    Some(None) => StreamEnd::Clean,
                    Some(Some(code)) => StreamEnd::Failed(*code),
                    None if self.host.stream_peer(h).is_some() => StreamEnd::Open,
                    None => StreamEnd::Unknown,
                };
                self.reply(id, &Response::Status { end });
            }
            Request::Subscribe => {
                if self.set_role(id, Role::Events) {
                    self.subscribers.push(id);
                    let info = self.host_info();
                    self.reply(id, &Response::Subscribed(info));
                }
            }
        }
    }

    /// The fetch owner of a chunk client connection (made on its first fetch).
    fn chunk_owner(&mut self, id: u64, role: Option<Role>) -> Option<Handle> {
        let o = match role {
            Some(Role::Chunks(o)) => o,
            Some(Role::Fresh) => {
                let o = self.host.fetch_owner();
                if !self.set_role(id, Role::Chunks(o)) {
                    return None;
                }
                o
            }
            _ => return None,
        };
        self.owners.insert(o, id);
        Some(o)
    }

    fn stats(&self) -> Vec<(String, u64)> {
        let (fetch, window, in_flight) = self.host.fetch_stats();
        let mut out: Vec<(String, u64)> = self
            .host
            .stats()
            .fields()
            .into_iter()
            .chain(fetch.fields())
            .chain([("fetch_window", window), ("fetch_in_flight", in_flight)])
            .chain(self.host.stream_stats().fields())
            .chain(self.link.stats().fields())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let (chunks, bytes, published) = self.host.store_usage();
        out.extend([
            ("store_chunks".to_string(), chunks as u64),
            ("store_bytes".to_string(), bytes as u64),
            ("store_published_bytes".to_string(), published as u64),
            ("apps".to_string(), self.conns.len() as u64),
            ("apps_overflowed".to_string(), self.apps_overflowed),
            ("echo_dropped".to_string(), self.echo_dropped),
            ("ipc_buffer_limit".to_string(), self.budget.limit() as u64),
            ("ipc_buffered_bytes".to_string(), self.budget.used() as u64),
            ("ipc_buffered_peak".to_string(), self.budget.peak() as u64),
            ("ipc_budget_waits".to_string(), self.budget.waits),
            ("ipc_waiting".to_string(), self.budget.waiting() as u64),
            ("ipc_evicted_idle".to_string(), self.budget.evicted_idle),
        ]);
        out
    }

    pub(super) fn stream_local(&self, h: Handle) -> Dag {
        self.host.stream_local(h).unwrap_or_else(|| self.host.dag())
    }

    pub(super) fn remember_status(&mut self, h: Handle, code: Option<ErrorCode>) {
        if self.status.insert(h, code).is_none() {
            self.status_order.push_back(h);
            while self.status_order.len() > STATUS_MEMORY {
                if let Some(old) = self.status_order.pop_front() {
                    self.status.remove(&old);
                }
            }
        }
    }

    /// Hands `job` to the hashing thread (or does it here if the thread is gone: it cannot end
    /// while we hold its sender).
    pub(super) fn hash(&mut self, now: Instant, job: Job) {
        if let Err(job) = self.hasher.submit(job) {
            let done = job.run();
            self.hashed(now, done);
        }
    }

    /// What the hashing thread did: a fetched chunk checked, or a published one named.
    pub(super) fn hashed(&mut self, now: Instant, done: Hashed) {
        match done {
            Hashed::Verified(v, ok) => self.host.chunk_verified(now, v, ok),
            Hashed::Named { conn, data, cid, charge } => {
                let policy = self.conns.get(&conn).map(|c| c.policy).unwrap_or_default();
                let answer = match self.host.chunk_put_hashed(cid, data, policy) {
                    Ok(cid) => {
                        if let Some(refs) = self.conns.get_mut(&conn).and_then(|c| c.leased.as_mut()) {
                            *refs.entry(cid).or_insert(0) += 1;
                        }
                        Response::Put { cid, dag: self.host.content_dag(cid) }
                    }
                    Err(e) => error(&e),
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.queue(&answer);
                    c.awaiting_hash = false;
                    // Its requests that came meanwhile.
                    self.dirty.insert(conn);
                } else if let Response::Put { cid, .. } = answer {
                    // Its publisher left meanwhile: a leased publication goes with it.
                    if self.leased_gone.remove(&conn) {
                        self.host.chunk_remove(&cid);
                    }
                }
                // In the store (which has bounds of its own) or dropped.
                self.budget.give_back(charge);
            }
        }
    }

    /// Tells every subscriber.
    pub(super) fn publish(&mut self, e: Event) {
        let m = Response::Event(e);
        let subscribers = std::mem::take(&mut self.subscribers);
        for &id in &subscribers {
            self.reply(id, &m);
        }
        self.subscribers = subscribers;
    }

    /// Host events to the applications they concern.
    pub(super) fn route_events(&mut self, now: Instant) {
        while let Some(v) = self.host.poll_verify() {
            self.hash(now, Job::Verify(v));
        }
        while let Some(e) = self.host.poll_event() {
            match e {
                HostEvent::StreamConnected(h) => {
                    let Some(&id) = self.owners.get(&h) else { continue };
                    let local = self.stream_local(h);
                    let peer = self.host.stream_peer(h).cloned().unwrap_or_else(|| local.clone());
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.queue(&Response::Connected { id: h ^ self.instance, local, peer });
                        c.role = Role::Raw(h);
                        self.dirty.insert(id);
                    }
                }
                HostEvent::StreamReadable(h)
                | HostEvent::StreamWritable(h)
                | HostEvent::StreamPeerClosed(h) => {
                    if let Some(&id) = self.owners.get(&h) {
                        self.dirty.insert(id);
                    }
                }
                HostEvent::StreamClosed(h, err) => {
                    // Remembered before the application's socket is closed: its question "how
                    // did it end?" always finds the answer.
                    self.remember_status(h, err.map(ErrorCode::from));
                    let Some(&id) = self.owners.get(&h) else {
                        self.unclaim(h);
                        self.host.close(h);
                        continue;
                    };
                    match (self.conns.get(&id).map(|c| c.role), err) {
                        (Some(Role::Connecting(_)), e) => {
                            let code = e.map_or(ErrorCode::Closed, ErrorCode::from);
                            if let Some(c) = self.conns.get_mut(&id) {
                                c.queue(&Response::Error { code, message: format!("connect: {code:?}") });
                                c.close_after_flush = true;
                                c.role = Role::Fresh;
                            }
                            self.owners.remove(&h);
                            self.host.close(h);
                        }
                        (_, Some(_)) => {
                            // Close the application's socket: its next read sees the end, and
                            // StreamStatus says it failed, and why. Its answer (Connected) goes
                            // first if it is still queued.
                            self.owners.remove(&h);
                            self.host.close(h);
                            match self.conns.get_mut(&id) {
                                Some(c) if c.pending_out() > 0 => {
                                    c.close_after_flush = true;
                                    c.role = Role::Fresh;
                                }
                                _ => self.remove_conn(id),
                            }
                        }
                        _ => {
                            self.dirty.insert(id);
                        }
                    }
                }
                HostEvent::StreamIncoming(l) => self.offer_incoming(l),
                HostEvent::DgramReadable(h) => {
                    if let Some(&id) = self.owners.get(&h) {
                        self.dirty.insert(id);
                    }
                }
                HostEvent::ChunkDone { owner, tag, result, .. } => {
                    let Some(&id) = self.owners.get(&owner) else { continue };
                    match result {
                        Ok(data) => {
                            if let Some(c) = self.conns.get_mut(&id) {
                                // The message, then the chunk's own buffer: no copy.
                                c.queue_owned(&Response::ChunkData { tag }, data);
                            }
                        }
                        Err(e) => self.reply(id, &Response::ChunkFailed { tag, code: e.into() }),
                    }
                }
                HostEvent::EchoReply { owner, seq, from, data } => {
                    if let Some(id) = self.echo_owner(owner) {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.queue_with(&Response::EchoReply { seq, from }, &data);
                        }
                    }
                }
                HostEvent::EchoError { owner, seq, from, kind, code } => {
                    if let Some(id) = self.echo_owner(owner) {
                        self.reply(id, &Response::EchoError { seq, from, kind: kind.into(), code });
                    }
                }
                HostEvent::Attached { ad, router } => {
                    tracing::info!("attached to {ad} via router {router}");
                    self.publish(Event::Attached { ad, router });
                }
                HostEvent::Registered { ad, router } => {
                    tracing::info!("registered in {ad} with {router}");
                    self.publish(Event::Registered { ad, router });
                }
                HostEvent::GatewayLost { ad, router } => {
                    tracing::warn!("gateway {router} of {ad} fell silent");
                    self.publish(Event::GatewayLost { ad, router });
                }
            }
        }
        let dag = self.host.dag();
        if dag != self.told_dag {
            self.told_dag = dag.clone();
            self.publish(Event::DagChanged { dag });
        }
    }

    /// Offers listener `l`'s application the connections waiting in the host's backlog, as
    /// many as its backlog allows unclaimed at once (the rest wait in the host, where they count
    /// against the backlog, and come as these are taken).
    fn offer_incoming(&mut self, l: Handle) {
        let Some(&id) = self.owners.get(&l) else { return };
        let offered = self.unclaimed.values().filter(|&&(o, _)| o == id).count();
        for _ in offered..self.host.backlog() {
            let Some((h, peer)) = self.host.accept(l) else { return };
            let t = token(&mut self.rng, |t| self.tokens.contains_key(&t));
            self.unclaimed.insert(h, (id, t));
            self.tokens.insert(t, h);
            self.reply(id, &Response::Incoming { token: t, peer });
        }
    }

    /// The connection to give an echo answer to, unless it is not reading (the answer is then
    /// dropped and counted, as a lost reply would be).
    fn echo_owner(&mut self, owner: Handle) -> Option<u64> {
        let id = *self.owners.get(&owner)?;
        if self.conns.get(&id)?.pending_out() >= OUTBUF_SOFT_LIMIT {
            self.echo_dropped += 1;
            return None;
        }
        Some(id)
    }

    /// Forgets an application connection and what it owned. `reset`: the stream it carried
    /// failed or is abandoned (the peer is told, if it is not over already).
    pub(super) fn drop_conn(&mut self, id: u64, reset: bool) {
        // What it published under a lease goes with it (and what it is publishing, once named).
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(refs) = c.leased.take() {
                if c.awaiting_hash {
                    self.leased_gone.insert(id);
                }
                for cid in refs.keys() {
                    self.host.chunk_remove(cid);
                }
            }
        }
        let Some(c) = self.conns.get(&id) else { return };
        match c.role {
            Role::Raw(h) | Role::Connecting(h) => {
                // A stream the application gave up before it was up, or abandoned broken: the
                // peer is told (a connection it would otherwise see opened and closed in order).
                let abandon = reset || matches!(c.role, Role::Connecting(_));
                if abandon && self.host.stream(h).is_some_and(|s| s.closed().is_none()) {
                    self.host.abort(h);
                    self.remember_status(h, Some(ErrorCode::Reset));
                }
                self.host.close(h);
                self.owners.remove(&h);
            }
            Role::Listener(h) => {
                // Connections nobody will take: reset, as the host does with its backlog.
                let orphans: Vec<Handle> =
                    self.unclaimed.iter().filter(|(_, &(o, _))| o == id).map(|(&s, _)| s).collect();
                for s in orphans {
                    self.unclaim(s);
                    self.host.abort(s);
                    self.host.close(s);
                }
                self.host.close(h);
                self.owners.remove(&h);
            }
            Role::Dgram(h) | Role::DgramSend(h) => {
                if matches!(c.role, Role::Dgram(_)) {
                    self.owners.remove(&h);
                }
                let left = self.dgram_holders.get_mut(&h).map_or(0, |n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                if left == 0 {
                    self.dgram_holders.remove(&h);
                    self.dgram_tokens.retain(|_, s| *s != h);
                    self.host.close(h);
                }
            }
            Role::Ping(h) | Role::Chunks(h) => {
                self.host.close(h);
                self.owners.remove(&h);
            }
            Role::Events => self.subscribers.retain(|&s| s != id),
            Role::Fresh => {}
        }
        self.remove_conn(id);
    }

    /// Forgets an incoming stream's attach token.
    pub(super) fn unclaim(&mut self, h: Handle) {
        if let Some((_, t)) = self.unclaimed.remove(&h) {
            self.tokens.remove(&t);
        }
    }

    pub(super) fn remove_conn(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            self.budget.give_back(c.held());
            self.budget.forget(id);
            if c.registered {
                let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, c.sock.as_raw_fd(), 0, id);
            }
        }
        self.dirty.remove(&id);
    }

    /// Takes a connection's socket out of epoll (after HUP).
    pub(super) fn deregister(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.registered {
                let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, c.sock.as_raw_fd(), 0, id);
                c.registered = false;
            }
        }
    }
}
