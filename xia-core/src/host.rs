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
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::keys::Keypair;
use crate::rng::Rng;
use crate::select::{select, Lookup, Selection};
use crate::transport::chunk::{ChunkError, ContentStore, FetchConfig, Fetcher, ServeJob, StoreError, Verify};
use crate::transport::stream::{Event as StreamEvent, Stream, StreamConfig, StreamError};
use crate::wire::chunk::{self as chunk_wire, ChunkRepr, NackReason};
use crate::wire::control::{self, ControlBody, HostRegister, Stamp};
use crate::wire::dgram::{self, DgramRepr};
use crate::wire::ethernet::{self, EtherType, EthernetAddress, EthernetRepr};
use crate::wire::stream::{self as stream_wire, Flags, StreamRepr};
use crate::wire::xarp::{self, XarpRepr};
use crate::wire::xcmp::{self, Unreachable, XcmpRepr};
use crate::wire::xip::LAST_NODE_ENTRY;
use crate::wire::xip::{self, NextHeader, XipRepr};
use crate::xid::{Principal, Xid, XidId, XidMap, HID_BROADCAST, SID_XHCP};

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

/// Where a frame goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Mac(EthernetAddress),
    /// An HID on the link whose MAC must be found first.
    Resolve(Xid),
}

#[derive(Debug)]
enum Route {
    /// For this very host.
    Local,
    /// Where it goes next.
    Out(Hop),
    Unreachable,
}

#[derive(Debug, Clone)]
struct Gateway {
    hid: Xid,
    mac: EthernetAddress,
    ad: Xid,
    last_seq: u64,
    name_server: Option<Dag>,
    /// Lost if no beacon comes before this.
    expires: Instant,
}

#[derive(Debug)]
struct Registration {
    seq: u64,
    next_at: Instant,
    receipt: Option<Vec<u8>>,
}

#[derive(Debug)]
struct StreamSock {
    conn: Stream,
    local_sid: Xid,
    remote: Dag,
    /// Ethernet + XIP header for its segments, the routing generation it was built for, and
    /// whether the peer is this very host.
    header: Option<(Vec<u8>, u64, bool)>,
    accepted_by: Option<Handle>,
}

#[derive(Debug)]
struct Listener {
    sid: Xid,
    backlog: VecDeque<Handle>,
}

#[derive(Debug)]
struct DgramSock {
    sid: Xid,
    queue: VecDeque<(Dag, Vec<u8>)>,
}

#[derive(Debug)]
struct ServeTask {
    job: ServeJob,
    header: Vec<u8>,
    /// The requester is this very host.
    local: bool,
}

#[derive(Debug)]
struct Pending {
    frames: VecDeque<Vec<u8>>,
    /// Content to serve to the neighbour once its MAC is known (its first requests arrive
    /// before we know where it is, as IP packets do before ARP).
    serve: Vec<ServeTask>,
    asked_at: Instant,
    tries: u32,
}

impl Pending {
    fn new(now: Instant, tries: u32) -> Pending {
        Pending { frames: VecDeque::new(), serve: Vec::new(), asked_at: now, tries }
    }

    fn queued(&self) -> usize {
        self.frames.len() + self.serve.len()
    }
}

/// What a local SID is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    Listener(Handle),
    Dgram(Handle),
    /// A client stream's ephemeral SID.
    Stream(Handle),
}

/// Neighbours remembered at most (a link with more hosts resolves the rest again).
const MAX_NEIGHBOURS: usize = 4096;
/// How old our signed XARP binding may get before we sign a new one.
const XARP_RESIGN_MS: u64 = 10_000;

/// A token bucket: `rate` per second, bursts of `burst`.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(now: Instant, burst: u32, rate: u32) -> TokenBucket {
        TokenBucket { tokens: f64::from(burst), burst: f64::from(burst), rate: f64::from(rate), at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
    /// The signed "our HID is at our MAC" that XARP replies carry, renewed now and then.
    xarp_binding: Option<xarp::Binding>,
    xarp_budget: TokenBucket,
    /// The time of the latest input (routing checks neighbour expiry against it).
    clock: Instant,
    pending: XidMap<Pending>,
    /// Bumped whenever routing changes, so cached headers are rebuilt.
    route_gen: u64,
    wall_base_ms: u64,
    instant_base: Instant,
    rng: Rng,
    next_handle: Handle,
    bindings: XidMap<Binding>,
    streams: HandleMap<StreamSock>,
    /// (local SID, remote SID) of every stream.
    stream_index: HashMap<(XidId, XidId), Handle, crate::xid::XidHashBuilder>,
    stream_order: VecDeque<Handle>,
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
            xarp_binding: None,
            xarp_budget: TokenBucket::new(now, 100, 1000),
            clock: now,
            pending: XidMap::default(),
            route_gen: 0,
            wall_base_ms: wall_ms,
            instant_base: now,
            rng,
            next_handle: 1,
            bindings: XidMap::default(),
            streams: Default::default(),
            stream_index: Default::default(),
            stream_order: VecDeque::new(),
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

    // ------------------------------------------------------------------ identity

    /// This host's HID.
    pub fn hid(&self) -> Xid {
        self.hid
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

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Counters of chunk fetches, the fetch window (bytes requested and not yet answered
    /// allowed at once) and the bytes requested and not yet answered.
    pub fn fetch_stats(&self) -> (crate::transport::chunk::FetchStats, u64, u64) {
        (self.fetcher.stats(), self.fetcher.window(), self.fetcher.in_flight())
    }

    /// The wall clock (ms since the Unix epoch) at `now`.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.wall_base_ms + now.saturating_duration_since(self.instant_base).as_millis() as u64
    }

    fn handle(&mut self) -> Handle {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    // ------------------------------------------------------------------ routing

    fn lookup(&self, x: &Xid) -> Lookup<Hop> {
        let gw = || self.gateway.as_ref().map_or(Lookup::Miss, |g| Lookup::NextHop(Hop::Mac(g.mac)));
        match x.principal() {
            Principal::Ad => {
                if Some(*x) == self.ad {
                    Lookup::Local
                } else {
                    gw()
                }
            }
            Principal::Hid => {
                if *x == self.hid || *x == HID_BROADCAST {
                    Lookup::Local
                } else if self.gateway.is_some() {
                    gw()
                } else if let Some((mac, _)) =
                    self.neighbours.get(x.id()).filter(|(_, until)| *until > self.clock)
                {
                    Lookup::NextHop(Hop::Mac(*mac))
                } else {
                    Lookup::NextHop(Hop::Resolve(*x))
                }
            }
            Principal::Sid => {
                if self.bindings.contains_key(x.id()) || *x == SID_XHCP {
                    Lookup::Local
                } else {
                    gw()
                }
            }
            Principal::Cid => {
                if self.store.contains(x) {
                    Lookup::Local
                } else {
                    gw()
                }
            }
            _ => gw(),
        }
    }

    fn route(&self, dst: &Dag) -> Route {
        let mut d = dst.clone();
        let mut last = LAST_NODE_ENTRY;
        match select(&mut d, &mut last, |x| self.lookup(x)) {
            Ok(Selection::Deliver) => Route::Local,
            Ok(Selection::Forward { hop, .. }) => Route::Out(hop),
            _ => Route::Unreachable,
        }
    }

    /// A whole frame for `payload` to `dst`, or where it must wait; `None` when unreachable.
    fn frame_for(
        &self,
        next: NextHeader,
        dst: &Dag,
        src: &Dag,
        payload: &[u8],
    ) -> Option<(Vec<u8>, Option<Hop>)> {
        // The selection picks the next hop; the packet leaves with its DAG untouched (last node
        // at the entry, no visited bits), as the prototype's hosts send it: routers mark what
        // they satisfy.
        let hop = match self.route(dst) {
            Route::Local => None,
            Route::Out(h) => Some(h),
            Route::Unreachable => return None,
        };
        let x = XipRepr::new(next, dst.clone(), src.clone(), payload.len());
        let dst_mac = match hop {
            Some(Hop::Mac(m)) => m,
            _ => self.mac,
        };
        let mut f = vec![0u8; ethernet::HEADER_LEN + x.buffer_len()];
        EthernetRepr { src: self.mac, dst: dst_mac, ethertype: EtherType::Xip }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
            .ok()?;
        x.emit(&mut f[ethernet::HEADER_LEN..]).ok()?;
        f[ethernet::HEADER_LEN + x.header_len()..].copy_from_slice(payload);
        Some((f, hop))
    }

    /// Queues a packet; false if there is no route.
    fn send_packet(&mut self, now: Instant, next: NextHeader, dst: &Dag, src: &Dag, payload: &[u8]) -> bool {
        match self.frame_for(next, dst, src, payload) {
            None => {
                self.stats.drop_unreachable += 1;
                false
            }
            Some((f, None)) => {
                self.loopback.push_back(f);
                true
            }
            Some((f, Some(Hop::Mac(_)))) => {
                self.out.push_back(f);
                true
            }
            Some((f, Some(Hop::Resolve(hid)))) => {
                self.await_resolution(now, hid, f);
                true
            }
        }
    }

    fn await_resolution(&mut self, now: Instant, hid: Xid, frame: Vec<u8>) {
        let limit = self.cfg.resolve_queue;
        let p = self.pending.entry(*hid.id()).or_insert_with(|| Pending::new(now, 0));
        if p.queued() >= limit {
            self.stats.drop_queue_full += 1;
            return;
        }
        p.frames.push_back(frame);
        if p.tries == 0 {
            p.tries = 1;
            p.asked_at = now;
            self.send_xarp_request(now, hid);
        }
    }

    /// Asks who has `target`, and remembers that we asked: only answers to our own questions
    /// are believed.
    fn send_xarp_request(&mut self, now: Instant, target: Xid) {
        self.pending.entry(*target.id()).or_insert_with(|| Pending::new(now, 1));
        let req = XarpRepr::Request { sender: self.hid, sender_mac: self.mac, target };
        self.out.push_back(self.xarp_frame(EthernetAddress::BROADCAST, &req));
    }

    fn xarp_frame(&self, dst: EthernetAddress, x: &XarpRepr) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + x.buffer_len()];
        let _ = EthernetRepr { src: self.mac, dst, ethertype: EtherType::Xarp }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
        let _ = x.emit(&mut f[ethernet::HEADER_LEN..]);
        f
    }

    fn learn_neighbour(&mut self, now: Instant, hid: Xid, mac: EthernetAddress) {
        let ttl = self.cfg.neighbour_ttl;
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(hid.id()) {
            self.neighbours.retain(|_, (_, until)| *until > now);
            if self.neighbours.len() >= MAX_NEIGHBOURS {
                self.stats.drop_queue_full += 1;
                return;
            }
        }
        let known = self.neighbours.insert(*hid.id(), (mac, now + ttl));
        if known.map(|k| k.0) != Some(mac) {
            self.route_gen += 1;
        }
        if let Some(p) = self.pending.remove(hid.id()) {
            for mut f in p.frames {
                f[..6].copy_from_slice(&mac.0);
                self.out.push_back(f);
            }
            for mut t in p.serve {
                t.header[..6].copy_from_slice(&mac.0);
                self.serving.push_back(t);
            }
        }
    }

    // ------------------------------------------------------------------ receiving

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

    fn handle_xarp(&mut self, now: Instant, payload: &[u8]) {
        match XarpRepr::parse(payload) {
            Ok(XarpRepr::Request { sender, sender_mac, target }) => {
                if target != self.hid {
                    return;
                }
                // Answering costs a signature now and then; a flood of questions gets a bounded
                // number of answers.
                if !self.xarp_budget.take(now) {
                    self.stats.drop_queue_full += 1;
                    return;
                }
                let wall = self.wall_ms(now);
                let binding = match self.xarp_binding {
                    Some(b) if wall.saturating_sub(b.timestamp_ms) < XARP_RESIGN_MS => b,
                    _ => {
                        let b = xarp::Binding::sign(&self.key, self.mac, wall);
                        self.xarp_binding = Some(b);
                        b
                    }
                };
                let reply = XarpRepr::Reply {
                    sender: self.hid,
                    sender_mac: self.mac,
                    target: sender,
                    target_mac: sender_mac,
                    binding,
                };
                self.out.push_back(self.xarp_frame(sender_mac, &reply));
            }
            Ok(XarpRepr::Reply { sender, sender_mac, target, binding, .. }) => {
                // Only signed answers to our own questions, recent enough, teach us anything:
                // nobody can claim another host's HID.
                let window = self.cfg.control_window.as_millis() as u64;
                let fresh = self.wall_ms(now).abs_diff(binding.timestamp_ms) <= window;
                let asked = target == self.hid && self.pending.contains_key(sender.id());
                if asked && fresh && binding.verify(&sender, &sender_mac) {
                    self.learn_neighbour(now, sender, sender_mac);
                } else {
                    self.stats.drop_bad_control += 1;
                }
            }
            Err(_) => self.stats.drop_malformed += 1,
        }
    }

    fn handle_xip(&mut self, now: Instant, src_mac: EthernetAddress, bytes: &[u8]) {
        let p = xip::Packet::new_unchecked(bytes);
        if p.validate().is_err() {
            self.stats.drop_malformed += 1;
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

    fn handle_xcmp(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(m) = xcmp::Packet::new_checked(payload).and_then(|p| XcmpRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        match m {
            XcmpRepr::EchoRequest { ident, seq, data } => {
                let reply = XcmpRepr::EchoReply { ident, seq, data };
                let mut buf = vec![0u8; reply.buffer_len()];
                if reply.emit(&mut buf).is_ok() {
                    let src = self.dag();
                    if self.send_packet(now, NextHeader::Xcmp, &x.src, &src, &buf) {
                        self.stats.echo_replies += 1;
                    }
                }
            }
            XcmpRepr::EchoReply { ident, seq, data } => match self.ping_idents.get(&u64::from(ident)) {
                Some(&owner) => {
                    let mut from = x.src.clone();
                    from.clear_visited();
                    self.events.push_back(HostEvent::EchoReply { owner, seq, from, data: data.to_vec() })
                }
                None => self.stats.drop_no_socket += 1,
            },
            XcmpRepr::DstUnreachable { original, .. }
            | XcmpRepr::TimeExceeded { original, .. }
            | XcmpRepr::Redirect { original, .. } => {
                let (kind, code) = (xcmp::Message::from(payload[0]), payload[1]);
                self.handle_xcmp_error(x, kind, code, original);
            }
            XcmpRepr::Other { .. } => {}
        }
    }

    /// An XCMP error quoting one of our packets: tell whoever sent it.
    fn handle_xcmp_error(&mut self, x: &XipRepr, kind: xcmp::Message, code: u8, original: &[u8]) {
        let q = xip::Packet::new_unchecked(original);
        if original.len() < xip::FIXED_HEADER_LEN || original.len() < q.header_len() {
            return;
        }
        let quoted_payload = &original[q.header_len()..];
        match q.next_header() {
            NextHeader::Xcmp if quoted_payload.len() >= 8 => {
                let ident = u16::from_be_bytes([quoted_payload[4], quoted_payload[5]]);
                let seq = u16::from_be_bytes([quoted_payload[6], quoted_payload[7]]);
                if let Some(&owner) = self.ping_idents.get(&u64::from(ident)) {
                    let mut from = x.src.clone();
                    from.clear_visited();
                    self.events.push_back(HostEvent::EchoError { owner, seq, from, kind, code });
                }
            }
            NextHeader::Stream if kind == xcmp::Message::DstUnreachable => {
                let (Some(dst), Some(src)) = (q.dst_intent(), q.src_intent()) else { return };
                if let Some(&h) = self.stream_index.get(&(*src.id(), *dst.id())) {
                    if let Some(s) = self.streams.get_mut(&h) {
                        s.conn.handle_unreachable();
                    }
                    self.drain_stream_events(h);
                }
            }
            _ => {}
        }
    }

    fn handle_dgram(&mut self, now: Instant, src_mac: EthernetAddress, x: &XipRepr, payload: &[u8]) {
        let Ok(d) = dgram::Packet::new_checked(payload).and_then(|p| DgramRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        let sid = *x.dst.intent();
        if sid == SID_XHCP {
            self.handle_control(now, src_mac, d.payload);
            return;
        }
        let Some(Binding::Dgram(h)) = self.bindings.get(sid.id()).copied() else {
            self.stats.drop_no_socket += 1;
            self.send_unreachable(now, x, Unreachable::Intent, payload);
            return;
        };
        let limit = self.cfg.dgram_queue;
        let sock = self.dgrams.get_mut(&h).expect("bound socket exists");
        if sock.queue.len() >= limit {
            self.stats.drop_queue_full += 1;
            return;
        }
        let was_empty = sock.queue.is_empty();
        let mut from = x.src.clone();
        from.clear_visited();
        sock.queue.push_back((from, d.payload.to_vec()));
        self.stats.dgrams_in += 1;
        if was_empty {
            self.events.push_back(HostEvent::DgramReadable(h));
        }
    }

    /// XCMP destination unreachable back to the sender of `x`, quoting it.
    fn send_unreachable(&mut self, now: Instant, x: &XipRepr, reason: Unreachable, payload: &[u8]) {
        // The original header as it arrived (its payload length included), then 8 bytes.
        let mut quoted = x.clone();
        quoted.payload_len = payload.len();
        let head = payload.len().min(xcmp::QUOTED_PAYLOAD);
        let mut original = vec![0u8; quoted.header_len() + head];
        if quoted.emit(&mut original).is_err() {
            return;
        }
        original[quoted.header_len()..].copy_from_slice(&payload[..head]);
        let m = XcmpRepr::DstUnreachable { reason, original: &original };
        let mut buf = vec![0u8; m.buffer_len()];
        if m.emit(&mut buf).is_ok() {
            let src = self.dag();
            self.send_packet(now, NextHeader::Xcmp, &x.src, &src, &buf);
        }
    }

    fn handle_control(&mut self, now: Instant, src_mac: EthernetAddress, msg: &[u8]) {
        // Control messages come from routers on the link, never from this host's applications.
        if self.in_loopback {
            self.stats.drop_bad_control += 1;
            return;
        }
        let body = match control::open(msg) {
            Ok(b) => b,
            Err(_) => {
                self.stats.drop_bad_control += 1;
                return;
            }
        };
        let wall = self.wall_ms(now);
        if !body.stamp().is_fresh(wall, self.cfg.control_window.as_millis() as u64) {
            self.stats.drop_stale_control += 1;
            return;
        }
        match body {
            // A host told its AD (a bare link) keeps it: beacons of other ADs are ignored.
            ControlBody::Beacon(b) if self.cfg.static_ad.is_some_and(|ad| ad != b.ad) => {
                self.stats.drop_bad_control += 1;
            }
            ControlBody::Beacon(b) => {
                let same = self.gateway.as_ref().filter(|g| g.ad == b.ad && g.hid == b.router_hid);
                if same.is_some_and(|g| b.stamp.seq <= g.last_seq) {
                    self.stats.drop_stale_control += 1;
                    return;
                }
                let changed = same.is_none_or(|g| g.mac != src_mac);
                // Sequence numbers jump forward when the router restarts (they start from its
                // clock): it has forgotten this host, which registers again now rather than at
                // its next refresh.
                let restarted = same.is_some_and(|g| b.stamp.seq > g.last_seq.saturating_add(1 << 12));
                self.stats.beacons += 1;
                let interval = Duration::from_millis(u64::from(b.stamp.millis));
                let silence =
                    (interval * self.cfg.gateway_missed_beacons).max(self.cfg.gateway_timeout_floor);
                self.gateway = Some(Gateway {
                    hid: b.router_hid,
                    mac: src_mac,
                    ad: b.ad,
                    last_seq: b.stamp.seq,
                    name_server: b.name_server.clone(),
                    expires: now + silence,
                });
                if changed {
                    self.ad = Some(b.ad);
                    self.route_gen += 1;
                    // Sequence numbers start from the clock, so a restarted host is not taken for a
                    // replay of its former self.
                    let seq = control::seq_base(self.wall_ms(now));
                    self.registration = Some(Registration { seq, next_at: now, receipt: None });
                    self.events.push_back(HostEvent::Attached { ad: b.ad, router: b.router_hid });
                } else if restarted {
                    if let Some(r) = self.registration.as_mut() {
                        r.next_at = now;
                    }
                }
            }
            ControlBody::HostRegistered(r) => {
                let ours = r.hid == self.hid
                    && self.gateway.as_ref().is_some_and(|g| g.ad == r.ad && g.hid == r.router);
                let Some(reg) = self.registration.as_mut().filter(|reg| ours && reg.seq == r.stamp.seq)
                else {
                    self.stats.drop_stale_control += 1;
                    return;
                };
                let first = reg.receipt.is_none();
                reg.receipt = Some(msg.to_vec());
                if first {
                    self.events.push_back(HostEvent::Registered { ad: r.ad, router: r.router });
                }
            }
            // Registrations and patches are for routers.
            ControlBody::HostRegister(_) | ControlBody::RoutePatch(_) | ControlBody::AdRoutes(_) => {
                self.stats.drop_bad_control += 1
            }
        }
    }

    /// The gateway fell silent: no router until beacons come again (the AD, and so the host's
    /// DAG, stay: the host is still where it was, only cut off).
    fn lose_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            self.registration = None;
            self.route_gen += 1;
            self.events.push_back(HostEvent::GatewayLost { ad: g.ad, router: g.hid });
        }
    }

    /// The link went down or came up. Up: register again at once (the router may have
    /// forgotten us meanwhile, or the link may now lead to another one).
    pub fn link_changed(&mut self, now: Instant, up: bool) {
        self.clock = now;
        if up {
            if let Some(r) = self.registration.as_mut() {
                r.next_at = now;
            }
        }
    }

    /// Sends a route patch to the router whose DAG is `router` (`RE AD HID`, typically the
    /// gateway of the AD this host was in before it moved): "traffic for my HID goes to the AD
    /// I am registered in now", signed with the host's key and carrying that AD's receipt. The
    /// router keeps the patched route for `lifetime`.
    pub fn send_route_patch(
        &mut self,
        now: Instant,
        router: &Dag,
        lifetime: Duration,
    ) -> Result<(), HostError> {
        let sealed = self.registration_receipt().ok_or(HostError::NotRegistered)?.to_vec();
        let Ok(ControlBody::HostRegistered(receipt)) = control::open(&sealed) else {
            return Err(HostError::NotRegistered);
        };
        if router.to_re_string().is_none() {
            return Err(HostError::NotAPath);
        }
        let mut path: Vec<Xid> = router.nodes().iter().map(|n| n.xid).collect();
        if path.last() != Some(&SID_XHCP) {
            path.push(SID_XHCP);
        }
        let dst = Dag::linear(&path).map_err(|_| HostError::NotAPath)?;
        let wall = self.wall_ms(now);
        self.patch_seq = (self.patch_seq + 1).max(control::seq_base(wall));
        let body = ControlBody::RoutePatch(Box::new(control::RoutePatch {
            stamp: Stamp {
                seq: self.patch_seq,
                timestamp_ms: wall,
                millis: lifetime.as_millis().min(u128::from(u32::MAX)) as u32,
            },
            receipt,
            sealed_receipt: sealed,
        }));
        let msg = body.seal(&self.key).map_err(|_| HostError::NotRegistered)?;
        let d = DgramRepr { payload: &msg };
        let mut buf = vec![0u8; d.buffer_len()];
        d.emit(&mut buf).map_err(|_| HostError::TooLarge { len: msg.len(), max: self.cfg.mtu })?;
        let src = self.service_dag(SID_XHCP);
        if self.send_packet(now, NextHeader::Dgram, &dst, &src, &buf) {
            Ok(())
        } else {
            Err(HostError::Unreachable)
        }
    }

    fn send_registration(&mut self, now: Instant) {
        let Some(g) = self.gateway.clone() else { return };
        let wall = self.wall_ms(now);
        let lifetime = self.cfg.registration_lifetime;
        let Some(reg) = self.registration.as_mut() else { return };
        reg.seq += 1;
        // Refresh at a third of the lifetime; retry sooner until a receipt arrives.
        let retry =
            if reg.receipt.is_some() { lifetime / 3 } else { Duration::from_secs(1).min(lifetime / 3) };
        reg.next_at = now + retry;
        let body = ControlBody::HostRegister(HostRegister {
            hid: self.hid,
            ad: g.ad,
            router: g.hid,
            stamp: Stamp { seq: reg.seq, timestamp_ms: wall, millis: lifetime.as_millis() as u32 },
        });
        let Ok(msg) = body.seal(&self.key) else { return };
        let d = DgramRepr { payload: &msg };
        let mut buf = vec![0u8; d.buffer_len()];
        if d.emit(&mut buf).is_ok() {
            let dst = Dag::linear(&[g.ad, g.hid, SID_XHCP]).expect("distinct XIDs");
            let src = self.service_dag(SID_XHCP);
            self.send_packet(now, NextHeader::Dgram, &dst, &src, &buf);
        }
    }

    /// A segment for established stream `h`.
    fn stream_segment(&mut self, now: Instant, h: Handle, payload: &[u8]) {
        let Ok(seg) = stream_wire::Packet::new_checked(payload).and_then(|p| StreamRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        self.stats.segments_in += 1;
        if let Some(s) = self.streams.get_mut(&h) {
            s.conn.handle_segment(now, &seg);
        }
        self.drain_stream_events(h);
    }

    fn handle_stream(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(seg) = stream_wire::Packet::new_checked(payload).and_then(|p| StreamRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        self.stats.segments_in += 1;
        let local = *x.dst.intent();
        let remote = *x.src.intent();
        if let Some(&h) = self.stream_index.get(&(*local.id(), *remote.id())) {
            if let Some(s) = self.streams.get_mut(&h) {
                s.conn.handle_segment(now, &seg);
            }
            self.drain_stream_events(h);
            return;
        }
        let listener = match self.bindings.get(local.id()) {
            Some(Binding::Listener(l)) => Some(*l),
            _ => None,
        };
        let is_syn = seg.flags.contains(Flags::SYN) && !seg.flags.contains(Flags::ACK);
        match listener {
            Some(l) if is_syn && remote.principal() == Principal::Sid => {
                // Half-open connections count against the backlog too, so SYNs alone cannot
                // pile up connections.
                let waiting = self.listeners.get(&l).map_or(0, |li| li.backlog.len());
                let half_open = self.streams.values().filter(|s| s.accepted_by == Some(l)).count();
                if waiting + half_open >= self.cfg.backlog {
                    self.stats.drop_queue_full += 1;
                    return;
                }
                let mut remote_dag = x.src.clone();
                remote_dag.clear_visited();
                let local_dag = self.service_dag(local);
                let cfg = self.stream_config(&local_dag, &remote_dag);
                let iss = self.rng.next_u64() as u32;
                let conn = Stream::accept(cfg, now, iss, &seg);
                let h = self.handle();
                self.streams.insert(
                    h,
                    StreamSock {
                        conn,
                        local_sid: local,
                        remote: remote_dag,
                        header: None,
                        accepted_by: Some(l),
                    },
                );
                self.stream_index.insert((*local.id(), *remote.id()), h);
                self.stream_order.push_back(h);
            }
            _ => {
                if !seg.flags.contains(Flags::RST) {
                    self.send_reset(now, x, &seg);
                }
                self.stats.drop_no_socket += 1;
            }
        }
    }

    /// RST for a segment that belongs to no connection (RFC 793's rules for its numbers).
    fn send_reset(&mut self, now: Instant, x: &XipRepr, seg: &StreamRepr<'_>) {
        let (seq, ack, flags) = if seg.flags.contains(Flags::ACK) {
            (seg.ack, 0, Flags::RST)
        } else {
            let len = seg.payload.len() as u32
                + u32::from(seg.flags.contains(Flags::SYN))
                + u32::from(seg.flags.contains(Flags::FIN));
            (0, seg.seq.wrapping_add(len), Flags::RST | Flags::ACK)
        };
        let r = StreamRepr { flags, seq, ack, ..StreamRepr::default() };
        let mut buf = vec![0u8; r.buffer_len()];
        if r.emit(&mut buf).is_ok() {
            let mut src = x.dst.clone();
            src.clear_visited();
            if self.send_packet(now, NextHeader::Stream, &x.src, &src, &buf) {
                self.stats.resets_sent += 1;
            }
        }
    }

    fn handle_chunk(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(c) = chunk_wire::Packet::new_checked(payload).and_then(|p| ChunkRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        match c {
            ChunkRepr::Request { request_id, .. } => {
                let cid = *x.dst.intent();
                let mut reply_to = x.src.clone();
                reply_to.clear_visited();
                let reason = match self.store.get(&cid) {
                    None => Some(NackReason::NotFound),
                    Some(_) if self.serving.len() >= self.cfg.max_serving => Some(NackReason::Busy),
                    Some(data) => match ServeJob::new(data, &c, self.cfg.max_serve) {
                        Err(r) => Some(r),
                        Ok(job) => {
                            let src = self.content_dag(cid);
                            match self.frame_for(NextHeader::Chunk, &reply_to, &src, &[]) {
                                Some((header, hop @ (Some(Hop::Mac(_)) | None))) => {
                                    self.serving.push_back(ServeTask { job, header, local: hop.is_none() });
                                    self.stats.chunk_requests_served += 1;
                                }
                                // The requester is on the link but not resolved yet: served
                                // once it is.
                                Some((header, Some(Hop::Resolve(hid)))) => {
                                    let limit = self.cfg.resolve_queue;
                                    let p =
                                        self.pending.entry(*hid.id()).or_insert_with(|| Pending::new(now, 0));
                                    if p.queued() >= limit {
                                        self.stats.drop_queue_full += 1;
                                    } else {
                                        p.serve.push(ServeTask { job, header, local: false });
                                        self.stats.chunk_requests_served += 1;
                                        if p.tries == 0 {
                                            p.tries = 1;
                                            p.asked_at = now;
                                            self.send_xarp_request(now, hid);
                                        }
                                    }
                                }
                                None => self.stats.drop_unreachable += 1,
                            }
                            None
                        }
                    },
                };
                if let Some(reason) = reason {
                    let nack = ChunkRepr::Nack { request_id, reason };
                    let mut buf = vec![0u8; nack.buffer_len()];
                    if nack.emit(&mut buf).is_ok() {
                        let src = self.content_dag(cid);
                        if self.send_packet(now, NextHeader::Chunk, &reply_to, &src, &buf) {
                            self.stats.chunk_nacks_out += 1;
                        }
                    }
                }
            }
            ChunkRepr::Response { .. } | ChunkRepr::Nack { .. } => {
                self.stats.chunk_pieces_in += 1;
                let cid = *x.src.intent();
                self.fetcher.handle_response(now, &cid, &c);
                self.drain_fetches();
            }
        }
    }

    fn drain_fetches(&mut self) {
        while let Some(c) = self.fetcher.poll_complete() {
            if let Some((owner, tag)) = self.fetch_tags.remove(&c.tag) {
                self.events.push_back(HostEvent::ChunkDone { owner, tag, cid: c.cid, result: c.result });
            }
        }
    }

    fn drain_stream_events(&mut self, h: Handle) {
        let Some(s) = self.streams.get_mut(&h) else { return };
        while let Some(e) = s.conn.poll_event() {
            let ev = match e {
                StreamEvent::Connected => {
                    if let Some(l) = s.accepted_by {
                        // Handed to the application only once established.
                        if let Some(li) = self.listeners.get_mut(&l) {
                            li.backlog.push_back(h);
                            if li.backlog.len() == 1 {
                                self.events.push_back(HostEvent::StreamIncoming(l));
                            }
                        }
                        continue;
                    }
                    HostEvent::StreamConnected(h)
                }
                StreamEvent::Readable => HostEvent::StreamReadable(h),
                StreamEvent::Writable => HostEvent::StreamWritable(h),
                StreamEvent::PeerClosed => HostEvent::StreamPeerClosed(h),
                StreamEvent::Closed(e) => HostEvent::StreamClosed(h, e),
            };
            self.events.push_back(ev);
        }
    }

    // ------------------------------------------------------------------ sending

    fn stream_config(&self, local: &Dag, remote: &Dag) -> StreamConfig {
        let xip = xip::FIXED_HEADER_LEN + xip::NODE_LEN * (local.len() + remote.len());
        // Room for the STREAM header with timestamps and three SACK blocks.
        let mss =
            self.cfg.mtu.saturating_sub(xip + stream_wire::HEADER_LEN + 12 + 28).clamp(64, u16::MAX as usize);
        StreamConfig { mss: mss as u16, ..self.cfg.stream.clone() }
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

    /// Makes sure stream `h` has an up-to-date Ethernet + XIP header for its segments; false
    /// when there is none yet (the next hop is being resolved, or there is no route).
    fn ensure_stream_header(&mut self, now: Instant, h: Handle) -> bool {
        let Some(s) = self.streams.get(&h) else { return false };
        if s.header.as_ref().is_some_and(|(_, g, _)| *g == self.route_gen) {
            return true;
        }
        let local = self.service_dag(s.local_sid);
        let remote = s.remote.clone();
        match self.frame_for(NextHeader::Stream, &remote, &local, &[]) {
            Some((hdr, hop @ (Some(Hop::Mac(_)) | None))) => {
                let gen = self.route_gen;
                if let Some(s) = self.streams.get_mut(&h) {
                    s.header = Some((hdr, gen, hop.is_none()));
                }
                true
            }
            Some((_, Some(Hop::Resolve(hid)))) => {
                if !self.pending.contains_key(hid.id()) {
                    self.send_xarp_request(now, hid);
                }
                false
            }
            None => false,
        }
    }

    fn transmit_stream(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..self.stream_order.len() {
            let h = self.stream_order.pop_front()?;
            if !self.streams.contains_key(&h) {
                continue;
            }
            self.stream_order.push_back(h);
            if !self.ensure_stream_header(now, h) {
                continue;
            }
            let max = (ethernet::HEADER_LEN + self.cfg.mtu).min(buf.len());
            let s = self.streams.get_mut(&h).expect("checked above");
            let (header, _, local) = s.header.as_ref().expect("ensured above");
            let (hlen, local) = (header.len(), *local);
            if max <= hlen {
                continue;
            }
            let Some(n) = s.conn.poll_transmit(now, &mut buf[hlen..max]) else { continue };
            let (header, _, _) = s.header.as_ref().expect("ensured above");
            buf[..hlen].copy_from_slice(header);
            // Patch the XIP payload length.
            buf[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
                .copy_from_slice(&(n as u16).to_be_bytes());
            self.stats.segments_out += 1;
            self.drain_stream_events(h);
            if local {
                // A segment to ourselves goes round the loopback.
                self.loopback.push_back(buf[..hlen + n].to_vec());
                continue;
            }
            return Some(hlen + n);
        }
        None
    }

    fn transmit_serving(&mut self, buf: &mut [u8]) -> Option<usize> {
        let max = (ethernet::HEADER_LEN + self.cfg.mtu).min(buf.len());
        while let Some(task) = self.serving.front_mut() {
            let hlen = task.header.len();
            let room = max.saturating_sub(hlen + chunk_wire::HEADER_LEN);
            if room == 0 {
                self.serving.pop_front();
                continue;
            }
            let Some(piece) = task.job.next_piece(room) else {
                self.serving.pop_front();
                continue;
            };
            let n = piece.buffer_len();
            if piece.emit(&mut buf[hlen..hlen + n]).is_err() {
                self.serving.pop_front();
                continue;
            }
            buf[..hlen].copy_from_slice(&task.header);
            buf[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
                .copy_from_slice(&(n as u16).to_be_bytes());
            self.stats.chunk_pieces_out += 1;
            let local = task.local;
            if task.job.is_done() {
                self.serving.pop_front();
            }
            if local {
                self.loopback.push_back(buf[..hlen + n].to_vec());
                continue;
            }
            return Some(hlen + n);
        }
        None
    }

    fn transmit_fetch(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let src = self.dag();
        loop {
            let req = self.fetcher.poll_transmit(now)?;
            let dag = req.dag.clone();
            let repr = req.repr;
            let mut payload = [0u8; chunk_wire::HEADER_LEN];
            repr.emit(&mut payload).ok()?;
            match self.frame_for(NextHeader::Chunk, &dag, &src, &payload) {
                Some((f, Some(Hop::Mac(_)))) => return copy_frame(buf, &f),
                Some((f, None)) => self.loopback.push_back(f),
                Some((f, Some(Hop::Resolve(hid)))) => self.await_resolution(now, hid, f),
                // Unreachable: the request times out and the fetch fails in due course.
                None => self.stats.drop_unreachable += 1,
            }
        }
    }

    // ------------------------------------------------------------------ timers

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

    // ------------------------------------------------------------------ applications

    fn bind(
        &mut self,
        sid: Option<Xid>,
        b: impl FnOnce(Handle) -> Binding,
    ) -> Result<(Handle, Xid), HostError> {
        let sid = match sid {
            Some(s) if s.principal() != Principal::Sid => return Err(HostError::NotAService),
            Some(s) => s,
            None => self.ephemeral_sid(),
        };
        if self.bindings.contains_key(sid.id()) || sid == SID_XHCP {
            return Err(HostError::AddrInUse);
        }
        let h = self.handle();
        self.bindings.insert(*sid.id(), b(h));
        Ok((h, sid))
    }

    fn ephemeral_sid(&mut self) -> Xid {
        let mut id = [0u8; 20];
        self.rng.fill(&mut id);
        Xid::new(Principal::Sid, id)
    }

    /// Binds a datagram socket to `sid` (`None`: a fresh random SID); returns it and its SID.
    pub fn dgram_bind(&mut self, sid: Option<Xid>) -> Result<(Handle, Xid), HostError> {
        let (h, sid) = self.bind(sid, Binding::Dgram)?;
        self.dgrams.insert(h, DgramSock { sid, queue: VecDeque::new() });
        Ok((h, sid))
    }

    /// Largest datagram from socket `h` to `dst`.
    pub fn dgram_max(&self, h: Handle, dst: &Dag) -> Result<usize, HostError> {
        let sock = self.dgrams.get(&h).ok_or(HostError::BadHandle)?;
        let src = self.service_dag(sock.sid);
        let xip = xip::FIXED_HEADER_LEN + xip::NODE_LEN * (dst.len() + src.len());
        Ok(self.cfg.mtu.saturating_sub(xip + dgram::HEADER_LEN))
    }

    /// Sends a datagram from socket `h` to `dst` (whose intent is a SID).
    pub fn dgram_send(&mut self, now: Instant, h: Handle, dst: &Dag, data: &[u8]) -> Result<(), HostError> {
        let max = self.dgram_max(h, dst)?;
        if data.len() > max {
            return Err(HostError::TooLarge { len: data.len(), max });
        }
        if dst.intent().principal() != Principal::Sid {
            return Err(HostError::NotAService);
        }
        if *dst.intent() == SID_XHCP {
            // Host and router control is the host's own business.
            return Err(HostError::AddrInUse);
        }
        let src = self.service_dag(self.dgrams[&h].sid);
        let d = DgramRepr { payload: data };
        let mut buf = vec![0u8; d.buffer_len()];
        d.emit(&mut buf).map_err(|_| HostError::TooLarge { len: data.len(), max })?;
        if !self.send_packet(now, NextHeader::Dgram, dst, &src, &buf) {
            return Err(HostError::Unreachable);
        }
        self.stats.dgrams_out += 1;
        Ok(())
    }

    /// The next datagram queued on socket `h`, with the sender's DAG.
    pub fn dgram_recv(&mut self, h: Handle) -> Option<(Dag, Vec<u8>)> {
        self.dgrams.get_mut(&h)?.queue.pop_front()
    }

    /// Listens for STREAM connections to `sid`.
    pub fn listen(&mut self, sid: Xid) -> Result<Handle, HostError> {
        let (h, sid) = self.bind(Some(sid), Binding::Listener)?;
        self.listeners.insert(h, Listener { sid, backlog: VecDeque::new() });
        Ok(h)
    }

    /// An established connection from listener `l`'s backlog, with the peer's DAG.
    pub fn accept(&mut self, l: Handle) -> Option<(Handle, Dag)> {
        let h = self.listeners.get_mut(&l)?.backlog.pop_front()?;
        let s = self.streams.get_mut(&h)?;
        s.accepted_by = None;
        Some((h, s.remote.clone()))
    }

    /// Opens a STREAM connection to `dst` (whose intent is a SID) from a fresh SID.
    pub fn connect(&mut self, now: Instant, dst: Dag) -> Result<Handle, HostError> {
        if dst.intent().principal() != Principal::Sid {
            return Err(HostError::NotAService);
        }
        if matches!(self.route(&dst), Route::Unreachable) {
            return Err(HostError::Unreachable);
        }
        let (h, sid) = self.bind(None, Binding::Stream)?;
        let local_dag = self.service_dag(sid);
        let cfg = self.stream_config(&local_dag, &dst);
        let iss = self.rng.next_u64() as u32;
        let conn = Stream::connect(cfg, now, iss);
        self.stream_index.insert((*sid.id(), *dst.intent().id()), h);
        self.streams
            .insert(h, StreamSock { conn, local_sid: sid, remote: dst, header: None, accepted_by: None });
        self.stream_order.push_back(h);
        Ok(h)
    }

    /// The connection behind stream handle `h` (read, write, close it directly).
    pub fn stream(&mut self, h: Handle) -> Option<&mut Stream> {
        self.streams.get_mut(&h).map(|s| &mut s.conn)
    }

    /// Collects the events a direct use of [`Host::stream`] produced.
    pub fn stream_touched(&mut self, h: Handle) {
        self.drain_stream_events(h);
    }

    /// This host's DAG for stream `h` (its service and SID).
    pub fn stream_local(&self, h: Handle) -> Option<Dag> {
        self.streams.get(&h).map(|s| self.service_dag(s.local_sid))
    }

    /// The peer's DAG of stream `h`.
    pub fn stream_peer(&self, h: Handle) -> Option<&Dag> {
        self.streams.get(&h).map(|s| &s.remote)
    }

    /// Starts a ping: returns its handle (XCMP echo identifier chosen here).
    pub fn ping_open(&mut self) -> Handle {
        let h = self.handle();
        let mut ident = self.rng.next_u64() as u16;
        while self.ping_idents.contains_key(&u64::from(ident)) {
            ident = ident.wrapping_add(1);
        }
        self.pings.insert(h, ident);
        self.ping_idents.insert(u64::from(ident), h);
        h
    }

    /// Sends an XCMP echo request for ping `h`.
    pub fn ping_send(
        &mut self,
        now: Instant,
        h: Handle,
        dst: &Dag,
        seq: u16,
        data: &[u8],
    ) -> Result<(), HostError> {
        let ident = *self.pings.get(&h).ok_or(HostError::BadHandle)?;
        let req = XcmpRepr::EchoRequest { ident, seq, data };
        let max = self
            .cfg
            .mtu
            .saturating_sub(xip::FIXED_HEADER_LEN + xip::NODE_LEN * (dst.len() + 2) + xcmp::HEADER_LEN);
        if data.len() > max {
            return Err(HostError::TooLarge { len: data.len(), max });
        }
        let mut buf = vec![0u8; req.buffer_len()];
        req.emit(&mut buf).map_err(|_| HostError::TooLarge { len: data.len(), max })?;
        let src = self.dag();
        if self.send_packet(now, NextHeader::Xcmp, dst, &src, &buf) {
            Ok(())
        } else {
            Err(HostError::Unreachable)
        }
    }

    /// Publishes a chunk; returns its CID.
    pub fn chunk_put(&mut self, data: Arc<[u8]>) -> Result<Xid, HostError> {
        Ok(self.store.put(data)?)
    }

    /// Removes a published chunk.
    pub fn chunk_remove(&mut self, cid: &Xid) -> bool {
        self.store.remove(cid)
    }

    /// Fetches `cid` from `dag` for `owner`; a [`HostEvent::ChunkDone`] with `tag` follows.
    pub fn chunk_fetch(
        &mut self,
        now: Instant,
        owner: Handle,
        cid: Xid,
        dag: Dag,
        len: Option<usize>,
        tag: u64,
    ) {
        let t = self.next_fetch_tag;
        self.next_fetch_tag += 1;
        self.fetch_tags.insert(t, (owner, tag));
        self.fetcher.fetch(now, cid, dag, len, t);
        self.drain_fetches();
    }

    /// Gives up the fetch `tag` of `owner`: nothing more is said of it.
    pub fn chunk_cancel(&mut self, owner: Handle, tag: u64) {
        let gone: Vec<u64> =
            self.fetch_tags.iter().filter(|(_, &(o, t))| o == owner && t == tag).map(|(&t, _)| t).collect();
        for t in gone {
            self.fetch_tags.remove(&t);
            self.fetcher.cancel(t);
        }
    }

    /// An assembled chunk to hash, when fetches defer verification
    /// ([`FetchConfig::defer_verify`]): hash it anywhere (e.g. [`Verify::check`] on another
    /// thread) and hand the outcome to [`Host::chunk_verified`].
    pub fn poll_verify(&mut self) -> Option<Verify> {
        self.fetcher.poll_verify()
    }

    /// The outcome of hashing a chunk from [`Host::poll_verify`].
    pub fn chunk_verified(&mut self, now: Instant, v: Verify, ok: bool) {
        self.fetcher.verified(now, v, ok);
        self.drain_fetches();
    }

    /// A fresh handle for an owner of chunk fetches.
    pub fn fetch_owner(&mut self) -> Handle {
        self.handle()
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
        let gone: Vec<u64> =
            self.fetch_tags.iter().filter(|(_, (owner, _))| *owner == h).map(|(&t, _)| t).collect();
        for t in gone {
            self.fetch_tags.remove(&t);
            self.fetcher.cancel(t);
        }
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
