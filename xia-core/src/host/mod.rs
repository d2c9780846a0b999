//! The host stack as a sans-IO state machine: everything `xiad` does except I/O.
//!
//! Frames come in through [`Host::handle_frame`] and go out of [`Host::poll_transmit`]; time is
//! passed in; applications act through handles (streams, datagram sockets, listeners, chunk
//! fetches, pings) and learn what happened from [`Host::poll_event`]. Because nothing here
//! touches a socket, two hosts can be joined by a simulated link in a unit test.
//!
//! What a host does:
//! - knows its HID (its key), its AD and gateway router (from signed beacons, or configured);
//! - routes what it sends with the shared DAG selection: local XIDs are satisfied here, the
//!   rest goes to the gateway, or, without one, to the neighbour owning the HID (found by XARP);
//! - registers with its gateway and keeps the AD's receipt (needed to patch routes after a move);
//! - answers XCMP echo, serves the content it publishes, runs STREAM connections, DGRAM sockets
//!   and chunk fetches for its applications;
//! - counts every frame it drops, by reason.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::keys::Keypair;
use crate::node::{TokenBucket, WallClock, XarpResponder};
use crate::rng::Rng;
use crate::select::{select, Selection};
use crate::transport::chunk::{ChunkError, ContentStore, FetchConfig, Fetcher, StoreError};
use crate::transport::stream::{StreamConfig, StreamError, StreamStats};
use crate::wire::ethernet::{self, EtherType, EthernetAddress};
use crate::wire::integrity;
use crate::wire::xcmp::{self};
use crate::wire::xip::{self, NextHeader, XipRepr};
use crate::xid::{Principal, Xid, XidId, XidMap};

mod attachment;
mod content;
mod echo;
mod neighbours;
mod routing;
mod sockets;
#[cfg(test)]
mod tests;

use attachment::{Gateway, Registration};
use content::ServeTask;
use neighbours::Pending;
use routing::{Hop, Route};
use sockets::{Binding, DgramSock, Listener, StreamSock};

/// An application object inside the host: a stream, listener, datagram socket, fetch owner or
/// ping.
pub type Handle = u64;

/// A map keyed by handles.
pub type HandleMap<V> = crate::xid::IdMap<V>;

/// The hasher of [`HandleMap`].
pub type HandleHasher = crate::xid::IdHasher;

/// Tunables of a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The link MTU (largest Ethernet payload).
    pub mtu: usize,
    /// The AD to use when no router beacons one (hosts on a bare link).
    pub static_ad: Option<Xid>,
    /// STREAM defaults (the MSS is derived per connection from the MTU and the DAGs).
    pub stream: StreamConfig,
    /// CHUNK fetch tunables.
    pub fetch: FetchConfig,
    /// Bytes of published content kept.
    pub store_bytes: usize,
    /// Largest chunk published or fetched.
    pub max_chunk: usize,
    /// Datagrams queued per socket before new ones are dropped.
    pub dgram_queue: usize,
    /// Connections waiting in a listener's backlog.
    pub backlog: usize,
    /// Responses being served at once before new requests get a "busy" reply.
    pub max_serving: usize,
    /// Bytes sent back for one CHUNK request at most (bounds what a forged requester DAG can
    /// reflect; fetchers ask for less).
    pub max_serve: usize,
    /// How long a neighbour's MAC is trusted.
    pub neighbour_ttl: Duration,
    /// Frames queued per HID while its MAC is resolved.
    pub resolve_queue: usize,
    /// How far a control message's timestamp may be from our clock.
    pub control_window: Duration,
    /// Lifetime asked for when registering with a router.
    pub registration_lifetime: Duration,
    /// The gateway is taken as lost when this many of its beacon intervals pass without one
    /// (and at least [`HostConfig::gateway_timeout_floor`]).
    pub gateway_missed_beacons: u32,
    /// The least time without beacons before the gateway is taken as lost.
    pub gateway_timeout_floor: Duration,
    /// Seed of the host's random numbers (sequence numbers, ephemeral SIDs); `None`: from the OS.
    pub seed: Option<u64>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            mtu: 1500,
            static_ad: None,
            stream: StreamConfig::default(),
            fetch: FetchConfig::default(),
            store_bytes: 1 << 30,
            max_chunk: crate::transport::chunk::DEFAULT_MAX_CHUNK,
            dgram_queue: 1024,
            backlog: 128,
            max_serving: 4096,
            max_serve: 256 << 10,
            neighbour_ttl: Duration::from_secs(60),
            resolve_queue: 256,
            control_window: Duration::from_secs(30),
            registration_lifetime: Duration::from_secs(30),
            gateway_missed_beacons: 5,
            gateway_timeout_floor: Duration::from_millis(500),
            seed: None,
        }
    }
}

/// Why an application request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The handle does not name an object of the right kind.
    #[error("no such socket")]
    BadHandle,
    /// The SID is already bound on this host.
    #[error("SID already in use")]
    AddrInUse,
    /// A datagram larger than one frame can carry.
    #[error("datagram of {len} bytes exceeds {max}")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// Largest datagram to that destination.
        max: usize,
    },
    /// No route to the destination (no gateway and not on the link).
    #[error("destination unreachable")]
    Unreachable,
    /// The content could not be published.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The intent of a stream or datagram destination must be a SID.
    #[error("the destination's intent must be a SID")]
    NotAService,
    /// No router has confirmed this host's registration (a route patch needs its receipt).
    #[error("not registered with a router")]
    NotRegistered,
    /// A router's DAG must be a path (`RE AD HID`).
    #[error("the router's DAG must be a path (RE AD HID)")]
    NotAPath,
    /// A name record the host signs must lead to the host (its HID the DAG's intent).
    #[error("the host signs names of DAGs whose intent is its HID only")]
    NotOwnDag,
}

/// What the host tells the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A stream finished its handshake.
    StreamConnected(Handle),
    /// A stream has data to read.
    StreamReadable(Handle),
    /// A stream's send buffer has room again.
    StreamWritable(Handle),
    /// The peer closed its direction of a stream.
    StreamPeerClosed(Handle),
    /// A stream is over (the handle stays valid until [`Host::close`]).
    StreamClosed(Handle, Option<StreamError>),
    /// A listener has a new connection waiting in its backlog.
    StreamIncoming(Handle),
    /// A datagram socket has datagrams queued.
    DgramReadable(Handle),
    /// A chunk fetch finished.
    ChunkDone {
        /// The fetch's owner.
        owner: Handle,
        /// The owner's tag.
        tag: u64,
        /// What was fetched.
        cid: Xid,
        /// The verified bytes or why not.
        result: Result<Vec<u8>, ChunkError>,
    },
    /// An XCMP echo reply for a ping.
    EchoReply {
        /// The ping.
        owner: Handle,
        /// Sequence number.
        seq: u16,
        /// Who answered.
        from: Dag,
        /// Echo data returned.
        data: Vec<u8>,
    },
    /// An XCMP error about a ping's echo request.
    EchoError {
        /// The ping.
        owner: Handle,
        /// Sequence number of the request concerned.
        seq: u16,
        /// Who reported it.
        from: Dag,
        /// What it reports (unreachable, time exceeded, ...).
        kind: xcmp::Message,
        /// XCMP code.
        code: u8,
    },
    /// The host learned (or changed) its AD and gateway from a beacon.
    Attached {
        /// The AD.
        ad: Xid,
        /// The gateway router's HID.
        router: Xid,
    },
    /// The gateway confirmed the host's registration.
    Registered {
        /// The AD.
        ad: Xid,
        /// The gateway router's HID.
        router: Xid,
    },
    /// The gateway's beacons stopped: the host has no router until beacons come again.
    GatewayLost {
        /// The AD it was in.
        ad: Xid,
        /// The gateway router's HID.
        router: Xid,
    },
}

/// Counters of a host, dropped frames by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames handed out for transmission.
    pub tx_frames: u64,
    /// Bytes handed out for transmission.
    pub tx_bytes: u64,
    /// Dropped: Ethernet destination is another host.
    pub drop_not_for_us: u64,
    /// Dropped: ethertype not spoken here.
    pub drop_ethertype: u64,
    /// Dropped: malformed Ethernet, XIP or XARP.
    pub drop_malformed: u64,
    /// Dropped: addressed to an intent this host does not have.
    pub drop_not_local: u64,
    /// Dropped: malformed transport header (XCMP, DGRAM, STREAM, CHUNK).
    pub drop_bad_transport: u64,
    /// Dropped: a STREAM, DGRAM or CHUNK packet whose integrity check failed (damaged on the
    /// way) or that carried none ([`crate::wire::integrity`]).
    pub drop_bad_check: u64,
    /// Dropped: no socket, listener or fetch for it.
    pub drop_no_socket: u64,
    /// Dropped: a queue was full (datagram socket, backlog, resolution).
    pub drop_queue_full: u64,
    /// Dropped: control message malformed or not authentic.
    pub drop_bad_control: u64,
    /// Dropped: control message stale or replayed.
    pub drop_stale_control: u64,
    /// Not sent: no route to the destination.
    pub drop_unreachable: u64,
    /// Not sent: the neighbour's MAC could not be resolved.
    pub drop_unresolved: u64,
    /// XCMP echo requests answered.
    pub echo_replies: u64,
    /// Datagrams received for sockets.
    pub dgrams_in: u64,
    /// Datagrams sent.
    pub dgrams_out: u64,
    /// STREAM segments received.
    pub segments_in: u64,
    /// STREAM segments sent.
    pub segments_out: u64,
    /// Resets sent for segments without a connection.
    pub resets_sent: u64,
    /// CHUNK requests served.
    pub chunk_requests_served: u64,
    /// CHUNK response pieces sent.
    pub chunk_pieces_out: u64,
    /// CHUNK negative replies sent.
    pub chunk_nacks_out: u64,
    /// CHUNK response pieces received.
    pub chunk_pieces_in: u64,
    /// Beacons accepted.
    pub beacons: u64,
}

impl HostStats {
    /// Every counter with its name, for logs and `xiad` stats output.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        macro_rules! list {
            ($($f:ident),* $(,)?) => { vec![$((stringify!($f), self.$f)),*] };
        }
        list!(
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            drop_not_for_us,
            drop_ethertype,
            drop_malformed,
            drop_not_local,
            drop_bad_transport,
            drop_bad_check,
            drop_no_socket,
            drop_queue_full,
            drop_bad_control,
            drop_stale_control,
            drop_unreachable,
            drop_unresolved,
            echo_replies,
            dgrams_in,
            dgrams_out,
            segments_in,
            segments_out,
            resets_sent,
            chunk_requests_served,
            chunk_pieces_out,
            chunk_nacks_out,
            chunk_pieces_in,
            beacons,
        )
    }
}

fn copy_frame(buf: &mut [u8], f: &[u8]) -> Option<usize> {
    let dst = buf.get_mut(..f.len())?;
    dst.copy_from_slice(f);
    Some(f.len())
}

/// The host stack.
#[derive(Debug)]
pub struct Host {
    cfg: HostConfig,
    key: Keypair,
    hid: Xid,
    mac: EthernetAddress,
    ad: Option<Xid>,
    gateway: Option<Gateway>,
    registration: Option<Registration>,
    /// Sequence number of the last route patch sent.
    patch_seq: u64,
    neighbours: XidMap<(EthernetAddress, Instant)>,
    /// Answers XARP requests for our HID (signed, renewed now and then).
    xarp: XarpResponder,
    xarp_budget: TokenBucket,
    /// The time of the latest input (routing checks neighbour expiry against it).
    clock: Instant,
    pending: XidMap<Pending>,
    /// Bumped whenever routing changes, so cached headers are rebuilt.
    route_gen: u64,
    wall: WallClock,
    rng: Rng,
    next_handle: Handle,
    bindings: XidMap<Binding>,
    streams: HandleMap<StreamSock>,
    /// (local SID, remote SID) of every stream.
    stream_index: HashMap<(XidId, XidId), Handle, crate::xid::XidHashBuilder>,
    stream_order: VecDeque<Handle>,
    /// Counters of the streams already forgotten.
    closed_stream_stats: StreamStats,
    listeners: HandleMap<Listener>,
    dgrams: HandleMap<DgramSock>,
    pings: HandleMap<u16>,
    ping_idents: HandleMap<Handle>,
    store: ContentStore,
    serving: VecDeque<ServeTask>,
    fetcher: Fetcher,
    fetch_tags: HandleMap<(Handle, u64)>,
    next_fetch_tag: u64,
    out: VecDeque<Vec<u8>>,
    /// Streams closed by their application, forgotten once finished.
    closing: Vec<Handle>,
    /// Frames being handled come from this host itself.
    in_loopback: bool,
    loopback: VecDeque<Vec<u8>>,
    events: VecDeque<HostEvent>,
    stats: HostStats,
    round: u32,
}

impl Host {
    /// A host with key `key` on a link whose MAC is `mac`. `wall_ms` is the wall clock (ms since
    /// the Unix epoch) at `now`; the host keeps it from the monotonic clock afterwards.
    pub fn new(cfg: HostConfig, key: Keypair, mac: EthernetAddress, now: Instant, wall_ms: u64) -> Host {
        let seed = cfg.seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).map(|_| u64::from_le_bytes(b)).unwrap_or(wall_ms)
        });
        let mut rng = Rng::new(seed);
        let hid = key.xid(Principal::Hid);
        let fetcher = Fetcher::new(
            FetchConfig { max_chunk: cfg.max_chunk, ..cfg.fetch.clone() },
            rng.next_u64() as u32,
        );
        Host {
            ad: cfg.static_ad,
            store: ContentStore::new(cfg.store_bytes, cfg.max_chunk),
            cfg,
            key,
            hid,
            mac,
            gateway: None,
            registration: None,
            patch_seq: 0,
            neighbours: XidMap::default(),
            xarp: XarpResponder::default(),
            xarp_budget: TokenBucket::new(now, 100, 1000),
            clock: now,
            pending: XidMap::default(),
            route_gen: 0,
            wall: WallClock::new(now, wall_ms),
            rng,
            next_handle: 1,
            bindings: XidMap::default(),
            streams: Default::default(),
            stream_index: Default::default(),
            stream_order: VecDeque::new(),
            closed_stream_stats: StreamStats::default(),
            listeners: Default::default(),
            dgrams: Default::default(),
            pings: Default::default(),
            ping_idents: Default::default(),
            serving: VecDeque::new(),
            fetcher,
            fetch_tags: Default::default(),
            next_fetch_tag: 0,
            out: VecDeque::new(),
            closing: Vec::new(),
            in_loopback: false,
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            stats: HostStats::default(),
            round: 0,
        }
    }

    /// This host's HID.
    pub fn hid(&self) -> Xid {
        self.hid
    }

    /// A name record for `name` to `dag` (whose intent must be this host's HID; `None`: a
    /// deletion), signed by the host's key: what the name service takes from this host.
    pub fn sign_name(
        &self,
        name: crate::wire::names::Name,
        dag: Option<Dag>,
        seq: u64,
        ttl_ms: u32,
    ) -> Result<crate::wire::names::Record, HostError> {
        if dag.as_ref().is_some_and(|d| *d.intent() != self.hid) {
            return Err(HostError::NotOwnDag);
        }
        Ok(crate::wire::names::Record::signed(&self.key, name, dag, seq, ttl_ms))
    }

    /// This host's MAC.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The AD the host is in, if known.
    pub fn ad(&self) -> Option<Xid> {
        self.ad
    }

    /// The gateway router's HID, if any.
    pub fn gateway(&self) -> Option<Xid> {
        self.gateway.as_ref().map(|g| g.hid)
    }

    /// The name server the gateway announced.
    pub fn name_server(&self) -> Option<Dag> {
        self.gateway.as_ref().and_then(|g| g.name_server.clone())
    }

    /// The AD's signed receipt for this host's registration (what a route patch carries).
    pub fn registration_receipt(&self) -> Option<&[u8]> {
        self.registration.as_ref().and_then(|r| r.receipt.as_deref())
    }

    /// The host's own DAG: `RE AD HID`, or `RE HID` without an AD.
    pub fn dag(&self) -> Dag {
        match self.ad {
            Some(ad) => Dag::host(ad, self.hid).unwrap_or_else(|_| self.bare_dag()),
            None => self.bare_dag(),
        }
    }

    fn bare_dag(&self) -> Dag {
        Dag::linear(&[self.hid]).expect("a one-node DAG is valid")
    }

    /// The DAG of a service on this host: `RE AD HID SID`.
    pub fn service_dag(&self, sid: Xid) -> Dag {
        let mut path = Vec::with_capacity(3);
        path.extend(self.ad);
        path.push(self.hid);
        path.push(sid);
        Dag::linear(&path).unwrap_or_else(|_| self.bare_dag())
    }

    /// The DAG of content published here: the CID first, the host as fallback.
    pub fn content_dag(&self, cid: Xid) -> Dag {
        match self.ad {
            Some(ad) => Dag::content(cid, ad, self.hid),
            None => Dag::from_paths(&[&[cid], &[self.hid, cid]]),
        }
        .unwrap_or_else(|_| self.bare_dag())
    }

    /// Connections a listener may hold waiting to be accepted.
    pub fn backlog(&self) -> usize {
        self.cfg.backlog
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The counters of every stream this host has had, closed or open.
    pub fn stream_stats(&self) -> StreamStats {
        let mut total = self.closed_stream_stats;
        for s in self.streams.values() {
            total.add(&s.conn.stats());
        }
        total
    }

    /// Counters of chunk fetches, the fetch window (bytes requested and not yet answered
    /// allowed at once) and the bytes requested and not yet answered.
    pub fn fetch_stats(&self) -> (crate::transport::chunk::FetchStats, u64, u64) {
        (self.fetcher.stats(), self.fetcher.window(), self.fetcher.in_flight())
    }

    /// The wall clock (ms since the Unix epoch) at `now`.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.wall.ms(now)
    }

    fn handle(&mut self) -> Handle {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Processes one received Ethernet frame.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.clock = now;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.mac && !dst.is_multicast() {
            self.stats.drop_not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            EtherType::Xip => self.handle_xip(now, eth.src_addr(), eth.payload()),
            EtherType::Xarp => self.handle_xarp(now, eth.payload()),
            _ => self.stats.drop_ethertype += 1,
        }
    }

    fn handle_xip(&mut self, now: Instant, src_mac: EthernetAddress, bytes: &[u8]) {
        let p = xip::Packet::new_unchecked(bytes);
        if p.validate().is_err() {
            self.stats.drop_malformed += 1;
            return;
        }
        // Nothing damaged on the way reaches a transport.
        if integrity::verify(bytes).is_err() {
            self.stats.drop_bad_check += 1;
            return;
        }
        // Fast path: a segment of a stream we have, found by its two intents (as TCP finds a
        // connection by its ports), without copying the DAGs out of the packet.
        if p.next_header() == NextHeader::Stream {
            if let (Some(dst), Some(src)) = (p.dst_intent(), p.src_intent()) {
                if let Some(&h) = self.stream_index.get(&(*dst.id(), *src.id())) {
                    self.stream_segment(now, h, p.payload());
                    return;
                }
            }
        }
        let Ok(mut x) = XipRepr::parse(&p) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let mut last = x.last_node;
        match select(&mut x.dst, &mut last, |xid| self.lookup(xid)) {
            Ok(Selection::Deliver) => {}
            // It reached this host, whose intent (service, content) is not here: the transport
            // answers (RST, negative reply, XCMP unreachable) as it would for an unbound port.
            Ok(Selection::Unreachable { at: Some(i) }) if x.dst.nodes()[i].xid == self.hid => {}
            _ => {
                self.stats.drop_not_local += 1;
                return;
            }
        }
        let payload = p.payload();
        match x.next_header {
            NextHeader::Xcmp => self.handle_xcmp(now, &x, payload),
            NextHeader::Dgram => self.handle_dgram(now, src_mac, &x, payload),
            NextHeader::Stream => self.handle_stream(now, &x, payload),
            NextHeader::Chunk => self.handle_chunk(now, &x, payload),
            _ => self.stats.drop_bad_transport += 1,
        }
    }

    /// Writes the next frame to send into `buf` (at least MTU + 14 bytes) and returns its
    /// length; `None` when nothing is waiting. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.run_loopback(now);
        self.reap_closed();
        while let Some(f) = self.out.pop_front() {
            if let Some(n) = copy_frame(buf, &f) {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += n as u64;
                return Some(n);
            }
        }
        // Take turns among streams, content being served and fetch requests.
        for k in 0..3 {
            let n = match (self.round + k) % 3 {
                0 => self.transmit_stream(now, buf),
                1 => self.transmit_serving(buf),
                _ => self.transmit_fetch(now, buf),
            };
            if let Some(n) = n {
                self.round = self.round.wrapping_add(1);
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += n as u64;
                self.run_loopback(now);
                return Some(n);
            }
        }
        None
    }

    /// Frames addressed to this host are handled here, not sent.
    fn run_loopback(&mut self, now: Instant) {
        let mut budget = 256;
        self.in_loopback = true;
        while let Some(f) = self.loopback.pop_front() {
            self.handle_frame(now, &f);
            budget -= 1;
            if budget == 0 {
                break;
            }
        }
        self.in_loopback = false;
    }

    /// When [`Host::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Work already queued (frames to ourselves, frames and events waiting) is due at once.
        if !self.loopback.is_empty() || !self.out.is_empty() || !self.events.is_empty() {
            return Some(self.clock);
        }
        let streams = self.streams.values().filter_map(|s| s.conn.poll_timeout()).min();
        let reg = self.registration.as_ref().map(|r| r.next_at);
        let resolve = self.pending.values().map(|p| p.asked_at + Duration::from_millis(200)).min();
        let gateway = self.gateway.as_ref().map(|g| g.expires);
        [streams, self.fetcher.poll_timeout(), reg, resolve, gateway].into_iter().flatten().min()
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        let due: Vec<Handle> = self
            .streams
            .iter()
            .filter(|(_, s)| s.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&h, _)| h)
            .collect();
        for h in due {
            if let Some(s) = self.streams.get_mut(&h) {
                s.conn.handle_timeout(now);
            }
            self.drain_stream_events(h);
        }
        if self.fetcher.poll_timeout().is_some_and(|t| t <= now) {
            self.fetcher.handle_timeout(now);
            self.drain_fetches();
        }
        if self.gateway.as_ref().is_some_and(|g| g.expires <= now) {
            self.lose_gateway();
        }
        if self.registration.as_ref().is_some_and(|r| r.next_at <= now) {
            self.send_registration(now);
        }
        self.reap_closed();
        // XARP: ask again a few times, then give up on the queued frames.
        let overdue: Vec<XidId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.asked_at + Duration::from_millis(200) <= now)
            .map(|(k, _)| *k)
            .collect();
        for id in overdue {
            let p = self.pending.get_mut(&id).expect("listed above");
            if p.tries >= 3 {
                self.stats.drop_unresolved += p.queued() as u64;
                self.pending.remove(&id);
                continue;
            }
            p.tries += 1;
            p.asked_at = now;
            self.send_xarp_request(now, Xid::new(Principal::Hid, id));
        }
    }

    /// The next event for the applications.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// Closes whatever `h` names: a stream is closed gracefully (FIN after its data) and
    /// forgotten once finished; a listener or socket unbinds its SID at once.
    pub fn close(&mut self, h: Handle) {
        if let Some(l) = self.listeners.remove(&h) {
            self.bindings.remove(l.sid.id());
            // Connections nobody will accept any more are reset, waiting or half-open.
            let orphans: Vec<Handle> =
                self.streams.iter().filter(|(_, s)| s.accepted_by == Some(h)).map(|(&s, _)| s).collect();
            for s in l.backlog.into_iter().chain(orphans) {
                self.abort(s);
                self.close(s);
            }
            return;
        }
        if let Some(d) = self.dgrams.remove(&h) {
            self.bindings.remove(d.sid.id());
            return;
        }
        if let Some(ident) = self.pings.remove(&h) {
            self.ping_idents.remove(&u64::from(ident));
            return;
        }
        if let Some(s) = self.streams.get_mut(&h) {
            s.conn.close();
            s.accepted_by = None;
            self.closing.push(h);
        }
        self.cancel_fetches(|owner, _| owner == h);
    }

    /// Aborts stream `h` (RST).
    pub fn abort(&mut self, h: Handle) {
        if let Some(s) = self.streams.get_mut(&h) {
            s.conn.abort();
        }
    }

    /// Forgets the closed streams that are finished.
    fn reap_closed(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let closing = std::mem::take(&mut self.closing);
        for h in closing {
            if !self.reap(h) && self.streams.contains_key(&h) {
                self.closing.push(h);
            }
        }
    }

    /// Forgets stream `h` if it is finished (its handle becomes invalid); true if it was.
    pub fn reap(&mut self, h: Handle) -> bool {
        let done = self.streams.get(&h).is_some_and(|s| s.conn.is_drained());
        if done {
            if let Some(s) = self.streams.remove(&h) {
                self.closed_stream_stats.add(&s.conn.stats());
                self.stream_index.remove(&(*s.local_sid.id(), *s.remote.intent().id()));
                if self.bindings.get(s.local_sid.id()) == Some(&Binding::Stream(h)) {
                    self.bindings.remove(s.local_sid.id());
                }
            }
            self.stream_order.retain(|&x| x != h);
        }
        done
    }
}
