//! The router as a sans-IO state machine: everything `xia-router` does except I/O.
//!
//! Frames come in through [`Router::handle_frame`], which forwards in place (the caller sends
//! the same buffer out of the port it is told) or consumes the frame; frames the router makes
//! itself (beacons, receipts, XCMP errors and replies) come out of [`Router::poll_transmit`].
//! Time is passed in.
//!
//! What a router does:
//! - forwards by the destination DAG with the shared selection ([`xia_core::select::select`]), one
//!   exact-match table per principal, each with an optional default; unknown principals miss,
//!   so the DAG's fallback edges are taken;
//! - beacons its AD on every port (signed by the AD key); a router of another AD hearing the
//!   beacon learns a route to that AD through the sender, which expires when beacons stop;
//! - exchanges distance vectors with the routers of other ADs (signed by the AD key, the whole
//!   table each time, split horizon with poisoned reverse, sent periodically and at once when
//!   routes change), so that ADs several hops away are routed;
//! - registers hosts (their HID routes, signed by the HID key, expiring unless refreshed) and
//!   answers with the AD's receipt;
//! - takes route patches: "HID X is now in AD Y", signed by X's key and carrying Y's receipt;
//!   the HID's route then follows Y's route (packets to X's old DAG reach its new place);
//! - answers XCMP echo, and sends XCMP unreachable and time exceeded back to the source, at a
//!   bounded rate;
//! - counts every frame it drops, by reason.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::node::{echo_reply, xip_frame, TokenBucket, WallClock, XarpResponder};
use xia_core::select::{select, Lookup, Selection};
use xia_core::transport::chunk::{ContentStore, ServeJob};
use xia_core::transport::ranges::RangeSet;
use xia_core::wire::chunk::{self as chunk_wire, ChunkRepr};
use xia_core::wire::control::{self, Beacon, ControlBody, HostRegistered, Stamp};
use xia_core::wire::dgram::{self, DgramRepr};
use xia_core::wire::ethernet::{self, EtherType, EthernetAddress};
use xia_core::wire::xarp::XarpRepr;
use xia_core::wire::xcmp::{self, Unreachable, XcmpRepr};
use xia_core::wire::xip::{self, NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid, XidMap, HID_BROADCAST, SID_XHCP, SID_XROUTE};

/// Tunables of a router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Time between beacons on each port.
    pub beacon_interval: Duration,
    /// A route learned from beacons lasts this many beacon intervals (of the sender's).
    pub beacon_routes_last: u32,
    /// Longest lifetime granted to a host registration or a route patch.
    pub max_lifetime: Duration,
    /// Control messages older (or newer) than this are refused.
    pub control_window: Duration,
    /// Where the AD's name server is, announced in beacons.
    pub name_server: Option<Dag>,
    /// XCMP errors sent per second at most (a burst of as many is allowed).
    pub xcmp_rate: u32,
    /// Frames made by the router waiting to go out, at most.
    pub out_queue: usize,
    /// Routes at most in each table (registrations and learned routes beyond are refused).
    pub max_routes: usize,
    /// Bytes of chunks cached from the CHUNK responses passing through (0: no cache).
    pub cache_bytes: usize,
    /// Largest chunk cached.
    pub max_chunk: usize,
    /// Bytes of chunks being put together from passing responses, at most (the oldest are
    /// given up first).
    pub assembly_bytes: usize,
    /// Bytes sent at most in answer to one request from the cache.
    pub max_serve: usize,
    /// Time between distance vectors sent to neighbour routers (sooner when routes change).
    pub dv_interval: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            beacon_interval: Duration::from_millis(100),
            beacon_routes_last: 3,
            max_lifetime: Duration::from_secs(600),
            control_window: Duration::from_secs(30),
            name_server: None,
            xcmp_rate: 1000,
            out_queue: 4096,
            max_routes: 1 << 20,
            cache_bytes: 256 << 20,
            max_chunk: 4 << 20,
            assembly_bytes: 64 << 20,
            max_serve: 4 << 20,
            dv_interval: Duration::from_millis(500),
        }
    }
}

/// A port of the router: an Ethernet interface.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// Interface name (for display).
    pub name: String,
    /// Its MAC.
    pub mac: EthernetAddress,
    /// Its MTU (largest Ethernet payload).
    pub mtu: usize,
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This router (its AD, its HID, its services).
    Local,
    /// Out of `port` to the neighbour at `mac`.
    Via {
        /// Port index.
        port: usize,
        /// The neighbour's MAC.
        mac: EthernetAddress,
    },
    /// Wherever the route to this AD leads (a patched HID route: the host moved there).
    FollowAd(Xid),
    /// Explicitly: use the DAG's next edge.
    Fallback,
}

/// How a route came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This router's own XIDs.
    Own,
    /// Configured (file or admin interface); never expires.
    Static,
    /// A neighbour router's beacon.
    Beacon,
    /// A host's registration.
    Registered,
    /// A route patch from a host that moved.
    Patched,
    /// A neighbour router's distance vector (AD routes over several hops).
    Routing,
}

impl Origin {
    /// Short name for `route show`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Own => "own",
            Origin::Static => "static",
            Origin::Beacon => "beacon",
            Origin::Registered => "registered",
            Origin::Patched => "patched",
            Origin::Routing => "routing",
        }
    }
}

/// A table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where it leads.
    pub target: Target,
    /// How it came to be.
    pub origin: Origin,
    /// When it goes (`None`: never).
    pub expires: Option<Instant>,
    /// AD-level hops to the destination (AD routes; 0 for this router's own, 1 for a
    /// neighbour's AD or a static route).
    pub metric: u8,
}

/// One line of `route show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The destination (`None`: the default of `principal`'s table).
    pub xid: Option<Xid>,
    /// The table.
    pub principal: Principal,
    /// The route.
    pub route: Route,
}

/// Why an admin change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The port index does not exist.
    #[error("no port {0}")]
    NoPort(usize),
    /// The route names this router itself.
    #[error("{0} is this router's own")]
    Own(Xid),
    /// Nothing to delete.
    #[error("no such route")]
    NotFound,
    /// The table is full.
    #[error("the table is full")]
    Full,
}

/// Counters, all monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Packets for this router itself.
    pub delivered: u64,
    /// Frames the router made (beacons, receipts, XCMP).
    pub originated: u64,
    /// Too short, or an XIP header that does not hold together.
    pub drop_malformed: u64,
    /// Not addressed to the port's MAC.
    pub drop_not_for_us: u64,
    /// Neither XIP nor XARP.
    pub drop_ethertype: u64,
    /// No usable edge: XCMP unreachable sent (unless rate-limited).
    pub drop_unreachable: u64,
    /// Hop limit exhausted: XCMP time exceeded sent (unless rate-limited).
    pub drop_hop_limit: u64,
    /// Larger than the outgoing port's MTU.
    pub drop_too_big: u64,
    /// Would go back out of the port it came in on to the MAC it came from.
    pub drop_loop: u64,
    /// For this router but of no use to it (an unknown transport, an unbound service).
    pub drop_local: u64,
    /// Control messages refused: malformed, bad signature, not for this AD or router.
    pub drop_bad_control: u64,
    /// Control messages refused as stale or replayed.
    pub drop_stale_control: u64,
    /// Route patches refused (bad signature, replay: also counted above).
    pub patches_refused: u64,
    /// Route patches applied.
    pub patches_applied: u64,
    /// Registrations accepted (refreshes included).
    pub registrations: u64,
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Beacons of neighbour routers accepted.
    pub beacons_heard: u64,
    /// XCMP errors and replies sent.
    pub xcmp_sent: u64,
    /// XCMP errors not sent: over the rate.
    pub xcmp_rate_limited: u64,
    /// Frames made by the router dropped: out-queue full.
    pub drop_queue_full: u64,
    /// Routes refused: table full.
    pub drop_table_full: u64,
    /// Routes expired.
    pub routes_expired: u64,
    /// CHUNK response pieces seen passing through (with the cache on).
    pub cache_pieces_seen: u64,
    /// Chunks put together from passing pieces and cached (hashed when first asked for).
    pub cache_chunks_stored: u64,
    /// Cached chunks whose bytes did not hash to their CID when first asked for (dropped).
    pub cache_chunks_corrupt: u64,
    /// Chunks given up half assembled (room for newer ones).
    pub cache_assemblies_dropped: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Response pieces sent from the cache.
    pub cache_pieces_out: u64,
    /// Distance vectors sent (one per port with a neighbour router).
    pub dv_sent: u64,
    /// Distance vectors of neighbour routers accepted.
    pub dv_heard: u64,
}

/// The counters as (name, value) pairs, in declaration order (for `stats`).
pub fn stats_fields(s: &RouterStats) -> Vec<(&'static str, u64)> {
    vec![
        ("rx_frames", s.rx_frames),
        ("forwarded", s.forwarded),
        ("delivered", s.delivered),
        ("originated", s.originated),
        ("drop_malformed", s.drop_malformed),
        ("drop_not_for_us", s.drop_not_for_us),
        ("drop_ethertype", s.drop_ethertype),
        ("drop_unreachable", s.drop_unreachable),
        ("drop_hop_limit", s.drop_hop_limit),
        ("drop_too_big", s.drop_too_big),
        ("drop_loop", s.drop_loop),
        ("drop_local", s.drop_local),
        ("drop_bad_control", s.drop_bad_control),
        ("drop_stale_control", s.drop_stale_control),
        ("patches_refused", s.patches_refused),
        ("patches_applied", s.patches_applied),
        ("registrations", s.registrations),
        ("beacons_sent", s.beacons_sent),
        ("beacons_heard", s.beacons_heard),
        ("xcmp_sent", s.xcmp_sent),
        ("xcmp_rate_limited", s.xcmp_rate_limited),
        ("drop_queue_full", s.drop_queue_full),
        ("drop_table_full", s.drop_table_full),
        ("routes_expired", s.routes_expired),
        ("cache_pieces_seen", s.cache_pieces_seen),
        ("cache_chunks_stored", s.cache_chunks_stored),
        ("cache_chunks_corrupt", s.cache_chunks_corrupt),
        ("cache_assemblies_dropped", s.cache_assemblies_dropped),
        ("cache_hits", s.cache_hits),
        ("cache_pieces_out", s.cache_pieces_out),
        ("dv_sent", s.dv_sent),
        ("dv_heard", s.dv_heard),
    ]
}

/// What to do with a frame just handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame out of this port.
    Forward(usize),
    /// The router took it, or dropped it (counted).
    Done,
}

#[derive(Debug, Default)]
struct Table {
    routes: XidMap<Route>,
    default: Option<Route>,
}

const TABLES: [Principal; 5] = [Principal::Ad, Principal::Hid, Principal::Sid, Principal::Cid, Principal::Ip];

fn table_index(p: Principal) -> Option<usize> {
    match p {
        Principal::Ad => Some(0),
        Principal::Hid => Some(1),
        Principal::Sid => Some(2),
        Principal::Cid => Some(3),
        Principal::Ip => Some(4),
        _ => None,
    }
}

/// Per neighbour-AD and per-HID sequence numbers: replays are refused.
#[derive(Debug, Default)]
struct Seqs {
    beacon: SeqMap,
    dv: SeqMap,
    register: SeqMap,
    patch: SeqMap,
}

/// The router.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    ad_key: Keypair,
    key: Keypair,
    ad: Xid,
    hid: Xid,
    ports: Vec<PortInfo>,
    tables: [Table; 5],
    /// Moves on with every change to the tables ([`Router::fib_generation`]).
    fib_gen: u64,
    /// Distance vector rounds of several pages being collected, per neighbour router (HID).
    dv_rounds: XidMap<DvRound>,
    seqs: Seqs,
    beacon_seq: u64,
    next_beacon: Instant,
    dv_seq: u64,
    next_dv: Instant,
    last_dv: Instant,
    /// Per port: until when a router of another AD was heard there (distance vectors go to
    /// those ports only).
    neighbour_ports: Vec<Option<Instant>>,
    next_expiry: Instant,
    /// XCMP errors and replies, and XARP replies: bursts of `xcmp_rate`, `xcmp_rate` a second.
    xcmp_budget: TokenBucket,
    /// Signed XARP replies for the router's HID (one binding per port, re-signed now and then).
    xarp: XarpResponder,
    out: VecDeque<(usize, Vec<u8>)>,
    cache: Option<ContentStore>,
    /// Cached chunks not hashed yet: checked against their CID when first asked for.
    unverified: XidMap<()>,
    assembling: XidMap<Assembly>,
    assembling_bytes: usize,
    serving: VecDeque<Serve>,
    clock: WallClock,
    stats: RouterStats,
}

impl Router {
    /// A router of the AD whose key is `ad_key`, with HID key `key`, on `ports`. `wall_ms` is
    /// the wall clock (ms since the Unix epoch) at `now`.
    pub fn new(
        cfg: RouterConfig,
        ad_key: Keypair,
        key: Keypair,
        ports: Vec<PortInfo>,
        now: Instant,
        wall_ms: u64,
    ) -> Router {
        let nports = ports.len();
        let ad = ad_key.xid(Principal::Ad);
        let hid = key.xid(Principal::Hid);
        let mut r = Router {
            xcmp_budget: TokenBucket::new(now, cfg.xcmp_rate, cfg.xcmp_rate),
            xarp: XarpResponder::default(),
            cfg: cfg.clone(),
            ad_key,
            key,
            ad,
            hid,
            ports,
            tables: Default::default(),
            fib_gen: 0,
            dv_rounds: XidMap::default(),
            seqs: Seqs::default(),
            beacon_seq: control::seq_base(wall_ms),
            next_beacon: now,
            dv_seq: control::seq_base(wall_ms),
            next_dv: now,
            last_dv: now,
            neighbour_ports: vec![None; nports],
            next_expiry: now,
            out: VecDeque::new(),
            cache: (cfg.cache_bytes > 0).then(|| ContentStore::new(cfg.cache_bytes, cfg.max_chunk)),
            unverified: XidMap::default(),
            assembling: XidMap::default(),
            assembling_bytes: 0,
            serving: VecDeque::new(),
            clock: WallClock::new(now, wall_ms),
            stats: RouterStats::default(),
        };
        let own = Route { target: Target::Local, origin: Origin::Own, expires: None, metric: 0 };
        for x in [ad, hid, HID_BROADCAST, SID_XHCP, SID_XROUTE] {
            r.table_mut(x.principal()).routes.insert(*x.id(), own);
        }
        r
    }

    /// The AD.
    pub fn ad(&self) -> Xid {
        self.ad
    }

    /// The router's HID.
    pub fn hid(&self) -> Xid {
        self.hid
    }

    /// The router's DAG: `RE AD HID`.
    pub fn dag(&self) -> Dag {
        Dag::host(self.ad, self.hid).expect("AD and HID differ")
    }

    /// The ports.
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// The wall clock (ms since the Unix epoch) at `now`.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.clock.ms(now)
    }

    fn table(&self, p: Principal) -> Option<&Table> {
        table_index(p).map(|i| &self.tables[i])
    }

    /// A table to change (the forwarding generation moves on: every change through here is
    /// taken as one).
    fn table_mut(&mut self, p: Principal) -> &mut Table {
        self.fib_gen += 1;
        // Only called with the principals of TABLES.
        &mut self.tables[table_index(p).unwrap_or(0)]
    }

    /// A number that changes whenever what the tables say about some XID may have changed: a
    /// forwarding decision remembered elsewhere (the XDP fast path) holds only while it stays.
    pub fn fib_generation(&self) -> u64 {
        self.fib_gen
    }

    // ------------------------------------------------------------------ routes

    /// Resizes the chunk cache to `bytes` (0 turns it off); what it held is dropped, as are
    /// chunks being put together.
    pub fn set_cache_bytes(&mut self, bytes: usize) {
        self.cfg.cache_bytes = bytes;
        self.cache = (bytes > 0).then(|| ContentStore::new(bytes, self.cfg.max_chunk));
        self.unverified.clear();
        self.assembling.clear();
        self.assembling_bytes = 0;
    }

    /// The chunk cache's size in bytes (0: off) and the bytes it holds.
    pub fn cache_usage(&self) -> (usize, usize) {
        (self.cfg.cache_bytes, self.cache.as_ref().map_or(0, ContentStore::bytes))
    }

    /// Every route, table by table (defaults first).
    pub fn routes(&self) -> Vec<RouteEntry> {
        let mut v = Vec::new();
        for (p, t) in TABLES.iter().zip(&self.tables) {
            if let Some(d) = t.default {
                v.push(RouteEntry { xid: None, principal: *p, route: d });
            }
            let mut rs: Vec<_> = t
                .routes
                .iter()
                .map(|(id, r)| RouteEntry { xid: Some(Xid::new(*p, *id)), principal: *p, route: *r })
                .collect();
            rs.sort_by_key(|e| e.xid);
            v.extend(rs);
        }
        v
    }

    /// The route for `xid`, if any (the table's default is not consulted).
    pub fn route(&self, xid: &Xid) -> Option<Route> {
        self.table(xid.principal())?.routes.get(xid.id()).copied()
    }

    /// Adds (or replaces) a static route: `xid` (or, with `None`, the default of the
    /// `principal` table) leads to `target`.
    pub fn add_route(
        &mut self,
        principal: Principal,
        xid: Option<Xid>,
        target: Target,
    ) -> Result<(), RouteError> {
        if let Target::Via { port, .. } = target {
            if port >= self.ports.len() {
                return Err(RouteError::NoPort(port));
            }
        }
        let route = Route { target, origin: Origin::Static, expires: None, metric: 1 };
        if table_index(principal).is_none() {
            return Err(RouteError::NotFound);
        }
        match xid {
            None => self.table_mut(principal).default = Some(route),
            Some(x) => {
                if self.route(&x).is_some_and(|r| r.origin == Origin::Own) {
                    return Err(RouteError::Own(x));
                }
                let max = self.cfg.max_routes;
                let t = self.table_mut(x.principal());
                if t.routes.len() >= max && !t.routes.contains_key(x.id()) {
                    return Err(RouteError::Full);
                }
                t.routes.insert(*x.id(), route);
            }
        }
        Ok(())
    }

    /// Deletes a route (or, with `None`, the default of the `principal` table).
    pub fn del_route(&mut self, principal: Principal, xid: Option<Xid>) -> Result<(), RouteError> {
        if table_index(principal).is_none() {
            return Err(RouteError::NotFound);
        }
        match xid {
            None => self.table_mut(principal).default.take().map(|_| ()).ok_or(RouteError::NotFound),
            Some(x) => {
                if self.route(&x).is_some_and(|r| r.origin == Origin::Own) {
                    return Err(RouteError::Own(x));
                }
                self.table_mut(x.principal()).routes.remove(x.id()).map(|_| ()).ok_or(RouteError::NotFound)
            }
        }
    }

    /// Inserts a learned route unless the table is full or a static/own route is there.
    fn learn(&mut self, xid: Xid, route: Route) -> bool {
        let max = self.cfg.max_routes;
        // Not through table_mut: refreshing a route (every beacon, every registration) leaves
        // the forwarding generation alone unless the route goes somewhere else.
        let t = &mut self.tables[table_index(xid.principal()).unwrap_or(0)];
        match t.routes.get(xid.id()) {
            Some(r) if matches!(r.origin, Origin::Own | Origin::Static) => return false,
            Some(r) if r.target == route.target => {}
            None if t.routes.len() >= max => {
                self.stats.drop_table_full += 1;
                return false;
            }
            _ => self.fib_gen += 1,
        }
        t.routes.insert(*xid.id(), route);
        true
    }

    /// What the tables say about `x` (one level of [`Target::FollowAd`] is followed).
    fn lookup(&self, x: &Xid) -> Lookup<(usize, EthernetAddress)> {
        if x.principal() == Principal::Cid && self.cache.as_ref().is_some_and(|c| c.contains(x)) {
            return Lookup::Local;
        }
        let Some(t) = self.table(x.principal()) else { return Lookup::Miss };
        let Some(r) = t.routes.get(x.id()).or(t.default.as_ref()) else { return Lookup::Miss };
        let target = match r.target {
            Target::FollowAd(ad) => {
                match self.tables[0].routes.get(ad.id()).or(self.tables[0].default.as_ref()) {
                    // The host moved to an AD routed through here: use that AD's route. A patch
                    // pointing at this router's own AD is stale (the host came back): fall back.
                    Some(ar) => ar.target,
                    None => return Lookup::Miss,
                }
            }
            t => t,
        };
        match target {
            Target::Local => Lookup::Local,
            Target::Via { port, mac } => Lookup::NextHop((port, mac)),
            Target::FollowAd(_) | Target::Fallback => Lookup::Fallback,
        }
    }

    // ------------------------------------------------------------------ timers

    /// When [`Router::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_beacon.min(self.next_expiry).min(self.next_dv)
    }

    /// Sends beacons that are due and expires routes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_beacon {
            self.send_beacons(now);
            self.next_beacon = now + self.cfg.beacon_interval;
        }
        if now >= self.next_expiry {
            let mut expired = 0;
            for t in &mut self.tables {
                t.routes.retain(|_, r| {
                    let keep = r.expires.is_none_or(|e| e > now);
                    expired += u64::from(!keep);
                    keep
                });
            }
            self.stats.routes_expired += expired;
            self.fib_gen += expired;
            self.next_expiry = now + Duration::from_millis(20);
            if expired > 0 {
                tracing::debug!("{expired} routes expired");
                self.dv_changed(now);
            }
        }
        if now >= self.next_dv {
            self.send_dv(now);
            self.last_dv = now;
            self.next_dv = now + self.cfg.dv_interval;
        }
    }

    /// AD routes changed: neighbours hear of it soon (at most every 20 ms).
    fn dv_changed(&mut self, now: Instant) {
        tracing::debug!("AD routes changed");
        self.next_dv = self.next_dv.min((self.last_dv + Duration::from_millis(20)).max(now));
    }

    /// The distance vector for `port`: this router's AD, and every AD routed elsewhere;
    /// routes through `port` itself are advertised as unreachable (poisoned), so that the
    /// neighbour there never routes them back through us.
    fn distance_vector(&self, port: usize) -> Vec<(Xid, u8)> {
        let mut v = vec![(self.ad, 0)];
        for (id, r) in &self.tables[0].routes {
            let ad = Xid::new(Principal::Ad, *id);
            if ad == self.ad {
                continue;
            }
            let hops = match r.target {
                Target::Via { port: p, .. } if p == port => control::AD_HOPS_INFINITY,
                Target::Via { .. } => r.metric.min(control::AD_HOPS_INFINITY),
                _ => continue,
            };
            v.push((ad, hops));
        }
        v.sort();
        v
    }

    fn send_dv(&mut self, now: Instant) {
        let dst = Dag::linear(&[HID_BROADCAST, SID_XROUTE]).expect("distinct XIDs");
        let src = self.dag();
        for port in 0..self.ports.len() {
            if self.neighbour_ports[port].is_none_or(|until| until <= now) {
                continue;
            }
            let routes = self.distance_vector(port);
            // As many routes per message as a frame of this port holds: the table goes in
            // pages, with consecutive sequence numbers.
            let per = self.dv_routes_per_frame(port, &dst, &src);
            let mut pages: Vec<&[(Xid, u8)]> = routes.chunks(per).collect();
            if pages.len() > usize::from(u8::MAX) {
                tracing::warn!("{} ADs routed: only {} advertised", routes.len(), per * usize::from(u8::MAX));
                pages.truncate(usize::from(u8::MAX));
            }
            let n = pages.len() as u8;
            for (k, page) in pages.into_iter().enumerate() {
                self.dv_seq += 1;
                let body = ControlBody::AdRoutes(Box::new(control::AdRoutes {
                    ad: self.ad,
                    router_hid: self.hid,
                    stamp: Stamp {
                        seq: self.dv_seq,
                        timestamp_ms: self.wall_ms(now),
                        millis: self.cfg.dv_interval.as_millis().min(u128::from(u32::MAX)) as u32,
                    },
                    routes: page.to_vec(),
                    page: k as u8,
                    pages: n,
                }));
                let Ok(msg) = body.seal(&self.ad_key) else { continue };
                if self.queue_dgram(port, EthernetAddress::BROADCAST, &dst, &src, &msg) {
                    self.stats.dv_sent += 1;
                }
            }
        }
    }

    /// Routes one distance vector message to `dst` from `src` carries in a frame of `port`.
    fn dv_routes_per_frame(&self, port: usize, dst: &Dag, src: &Dag) -> usize {
        const ROUTE: usize = 28; // AD (24) + hops (1) + reserved (3) on the wire
        let empty = ControlBody::AdRoutes(Box::new(control::AdRoutes {
            ad: self.ad,
            router_hid: self.hid,
            stamp: Stamp { seq: 0, timestamp_ms: 0, millis: 0 },
            routes: Vec::new(),
            page: 0,
            pages: 1,
        }))
        .buffer_len();
        let d = DgramRepr { payload: &[] }.buffer_len();
        let x = XipRepr::new(NextHeader::Dgram, dst.clone(), src.clone(), 0).header_len();
        let room = self.ports[port].mtu.saturating_sub(x + d + empty);
        (room / ROUTE).clamp(1, control::MAX_AD_ROUTES)
    }

    /// Collects the pages of a neighbour's distance vector round (the first page's sequence
    /// number names it); the ADs of the whole table once its last page completes it.
    fn dv_round(&mut self, r: &control::AdRoutes, listed: &XidMap<u8>) -> Option<XidMap<()>> {
        let id = r.stamp.seq.wrapping_sub(u64::from(r.page));
        if r.pages == 1 {
            self.dv_rounds.remove(r.router_hid.id());
            return Some(listed.keys().map(|k| (*k, ())).collect());
        }
        if !self.dv_rounds.contains_key(r.router_hid.id()) && self.dv_rounds.len() >= MAX_DV_ROUNDS {
            // Bounded: rounds of routers no longer heard make room.
            let oldest = self.dv_rounds.iter().min_by_key(|(_, d)| d.id).map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.dv_rounds.remove(&k);
            }
        }
        let round = self.dv_rounds.entry(*r.router_hid.id()).or_insert_with(|| DvRound {
            id,
            pages: r.pages,
            got: 0,
            ads: XidMap::default(),
        });
        if round.id != id || round.pages != r.pages {
            *round = DvRound { id, pages: r.pages, got: 0, ads: XidMap::default() };
        }
        round.got = round.got.saturating_add(1);
        for k in listed.keys() {
            if round.ads.len() < self.cfg.max_routes {
                round.ads.insert(*k, ());
            }
        }
        // Sequence numbers only go up, so no page comes twice: all of them are in when as many
        // have come as there are.
        if round.got < round.pages {
            return None;
        }
        self.dv_rounds.remove(r.router_hid.id()).map(|d| d.ads)
    }

    /// A router of another AD was heard on `port`: distance vectors go there from now on, and
    /// a new neighbour gets ours at once.
    fn note_neighbour(&mut self, now: Instant, port: usize, interval: Duration) {
        let until = now + interval * self.cfg.beacon_routes_last;
        let known = self.neighbour_ports[port].is_some_and(|u| u > now);
        self.neighbour_ports[port] = Some(until.max(self.neighbour_ports[port].unwrap_or(until)));
        if !known {
            tracing::debug!("a neighbour router on {}", self.ports[port].name);
            self.dv_changed(now);
        }
    }

    /// A neighbour router's distance vector, heard on `port` from `from_mac`.
    fn handle_dv(&mut self, now: Instant, port: usize, from_mac: EthernetAddress, r: &control::AdRoutes) {
        if r.ad == self.ad {
            // A router of this same AD: its routes are ours already.
            return;
        }
        self.stats.dv_heard += 1;
        let via = Target::Via { port, mac: from_mac };
        let interval = Duration::from_millis(u64::from(r.stamp.millis.max(1)));
        self.note_neighbour(now, port, interval);
        let expires = Some(now + (interval * self.cfg.beacon_routes_last).min(self.cfg.max_lifetime));
        let mut changed = false;
        let listed: XidMap<u8> = r
            .routes
            .iter()
            .filter(|(_, h)| *h < control::AD_HOPS_INFINITY - 1)
            .map(|(ad, h)| (*ad.id(), *h))
            .collect();
        // The pages of a round are the neighbour's whole table: once all of them are in, what
        // it no longer lists (or lists as unreachable) is no longer reachable through it. A
        // round with a page lost withdraws nothing (its routes expire if it lasts).
        if let Some(all) = self.dv_round(r, &listed) {
            let before = self.tables[0].routes.len();
            self.tables[0].routes.retain(|id, rt| {
                !(rt.origin == Origin::Routing && rt.target == via && !all.contains_key(id))
            });
            changed |= self.tables[0].routes.len() != before;
            self.fib_gen += (before - self.tables[0].routes.len()) as u64;
        }
        for (id, hops) in listed {
            let ad = Xid::new(Principal::Ad, id);
            if ad == self.ad {
                continue;
            }
            let metric = hops + 1;
            let better = match self.route(&ad) {
                None => true,
                Some(cur) if matches!(cur.origin, Origin::Own | Origin::Static) => false,
                // The neighbour's own AD, already known from its beacons: refreshed by them.
                Some(cur) if cur.target == via && cur.origin == Origin::Beacon && metric == 1 => false,
                // Through the same neighbour: refreshed, its metric as the neighbour says now.
                Some(cur) if cur.target == via => true,
                Some(cur) => metric < cur.metric,
            };
            if better {
                let old = self.route(&ad);
                let route = Route { target: via, origin: Origin::Routing, expires, metric };
                if self.learn(ad, route) && old.is_none_or(|o| o.target != via || o.metric != metric) {
                    changed = true;
                }
            }
        }
        if changed {
            self.dv_changed(now);
        }
    }

    fn send_beacons(&mut self, now: Instant) {
        self.beacon_seq += 1;
        let body = ControlBody::Beacon(Box::new(Beacon {
            ad: self.ad,
            router_hid: self.hid,
            stamp: Stamp {
                seq: self.beacon_seq,
                timestamp_ms: self.wall_ms(now),
                millis: self.cfg.beacon_interval.as_millis().min(u128::from(u32::MAX)) as u32,
            },
            name_server: self.cfg.name_server.clone(),
        }));
        let Ok(msg) = body.seal(&self.ad_key) else { return };
        let dst = Dag::linear(&[HID_BROADCAST, SID_XHCP]).expect("distinct XIDs");
        let src = self.dag();
        for port in 0..self.ports.len() {
            if self.queue_dgram(port, EthernetAddress::BROADCAST, &dst, &src, &msg) {
                self.stats.beacons_sent += 1;
            }
        }
    }

    // ------------------------------------------------------------------ output

    /// The next frame the router made, and the port it goes out of.
    pub fn poll_transmit(&mut self) -> Option<(usize, Vec<u8>)> {
        if let Some(f) = self.out.pop_front() {
            return Some(f);
        }
        self.next_cache_piece()
    }

    /// True when [`Router::poll_transmit`] has frames (the daemon then waits for room to send
    /// them, not for input).
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.serving.is_empty()
    }

    fn next_cache_piece(&mut self) -> Option<(usize, Vec<u8>)> {
        loop {
            let s = self.serving.front_mut()?;
            let hlen = s.header.len();
            let room =
                self.ports[s.port].mtu.saturating_sub(hlen - ethernet::HEADER_LEN + chunk_wire::HEADER_LEN);
            let Some(piece) = s.job.next_piece(room) else {
                self.serving.pop_front();
                continue;
            };
            let n = piece.buffer_len();
            let mut f = vec![0u8; hlen + n];
            f[..hlen].copy_from_slice(&s.header);
            if piece.emit(&mut f[hlen..]).is_err() {
                self.serving.pop_front();
                continue;
            }
            // The XIP payload length, now that the piece's is known.
            f[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4].copy_from_slice(&(n as u16).to_be_bytes());
            let port = s.port;
            if s.job.is_done() {
                self.serving.pop_front();
            }
            self.stats.cache_pieces_out += 1;
            self.stats.originated += 1;
            return Some((port, f));
        }
    }

    fn push_out(&mut self, port: usize, frame: Vec<u8>) -> bool {
        if self.out.len() >= self.cfg.out_queue {
            self.stats.drop_queue_full += 1;
            return false;
        }
        self.stats.originated += 1;
        self.out.push_back((port, frame));
        true
    }

    /// A frame out of `port` to `mac` carrying an XIP packet; `None` if it exceeds the port's MTU.
    fn build_frame(
        &self,
        port: usize,
        mac: EthernetAddress,
        next: NextHeader,
        dst: &Dag,
        src: &Dag,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let p = &self.ports[port];
        xip_frame(p.mac, mac, p.mtu, next, dst, src, payload)
    }

    fn queue_dgram(&mut self, port: usize, mac: EthernetAddress, dst: &Dag, src: &Dag, msg: &[u8]) -> bool {
        let d = DgramRepr { payload: msg };
        let mut buf = vec![0u8; d.buffer_len()];
        if d.emit(&mut buf).is_err() {
            return false;
        }
        match self.build_frame(port, mac, NextHeader::Dgram, dst, src, &buf) {
            Some(f) => self.push_out(port, f),
            None => false,
        }
    }

    /// Routes a packet the router makes itself to `dst`.
    fn originate(&mut self, next: NextHeader, dst: &Dag, payload: &[u8]) -> bool {
        let mut d = dst.clone();
        let mut last = xia_core::wire::xip::LAST_NODE_ENTRY;
        let hop = match select(&mut d, &mut last, |x| self.lookup(x)) {
            Ok(Selection::Forward { hop, .. }) => hop,
            _ => return false,
        };
        let src = self.dag();
        match self.build_frame(hop.0, hop.1, next, dst, &src, payload) {
            Some(f) => self.push_out(hop.0, f),
            None => false,
        }
    }

    // ------------------------------------------------------------------ input

    /// Handles one frame received on `port`. On [`Action::Forward`] the frame has been rewritten
    /// in place (MACs, hop limit, last node, visited bits) and goes out of the port given.
    pub fn handle_frame(&mut self, now: Instant, port: usize, frame: &mut [u8]) -> Action {
        self.stats.rx_frames += 1;
        let Some(info) = self.ports.get(port) else { return Action::Done };
        let in_mac = info.mac;
        let Ok(eth) = ethernet::Frame::new_checked(&frame[..]) else {
            self.stats.drop_malformed += 1;
            return Action::Done;
        };
        let dst = eth.dst_addr();
        if dst != in_mac && !dst.is_multicast() {
            self.stats.drop_not_for_us += 1;
            return Action::Done;
        }
        let from_mac = eth.src_addr();
        match eth.ethertype() {
            EtherType::Xip => {}
            EtherType::Xarp => {
                self.handle_xarp(now, port, &frame[ethernet::HEADER_LEN..]);
                return Action::Done;
            }
            _ => {
                self.stats.drop_ethertype += 1;
                return Action::Done;
            }
        }
        let (eth_head, body) = frame.split_at_mut(ethernet::HEADER_LEN);
        let Ok(mut p) = xip::Packet::new_checked(&mut body[..]) else {
            self.stats.drop_malformed += 1;
            return Action::Done;
        };
        if p.version() != xip::VERSION {
            self.stats.drop_malformed += 1;
            return Action::Done;
        }
        let hop_limit = p.hop_limit();
        let (mut nodes, last) = p.dst_nodes_mut();
        let sel = select(&mut nodes, last, |x| self.lookup(x));
        match sel {
            Ok(Selection::Forward { hop: (out, mac), .. }) => {
                if out == port && mac == from_mac {
                    self.stats.drop_loop += 1;
                    return Action::Done;
                }
                // Frames sent to everyone on a link are for this router only if their DAG ends
                // here (beacons, vectors); every router of a shared link forwarding them would
                // multiply them.
                if dst.is_multicast() {
                    self.stats.drop_not_for_us += 1;
                    return Action::Done;
                }
                if hop_limit <= 1 {
                    self.stats.drop_hop_limit += 1;
                    self.send_xcmp_error(now, body, XcmpKind::TimeExceeded);
                    return Action::Done;
                }
                let len = body.len();
                if len > self.ports[out].mtu {
                    self.stats.drop_too_big += 1;
                    return Action::Done;
                }
                let mut p = xip::Packet::new_unchecked(&mut body[..]);
                p.set_hop_limit(hop_limit - 1);
                if self.cache.is_some() && p.next_header() == NextHeader::Chunk {
                    self.observe_chunk(now, &body[..]);
                }
                eth_head[..6].copy_from_slice(&mac.0);
                eth_head[6..12].copy_from_slice(&self.ports[out].mac.0);
                self.stats.forwarded += 1;
                Action::Forward(out)
            }
            Ok(Selection::Deliver) => {
                self.stats.delivered += 1;
                self.deliver(now, port, from_mac, body);
                Action::Done
            }
            Ok(Selection::Unreachable { at }) => {
                self.stats.drop_unreachable += 1;
                // The entry failed: no route to the AD (or whatever the DAG starts with); past
                // it, to the host or the intent.
                let reason = match at {
                    None => Unreachable::Net,
                    Some(_) => Unreachable::Host,
                };
                self.send_xcmp_error(now, body, XcmpKind::Unreachable(reason));
                Action::Done
            }
            Err(_) => {
                self.stats.drop_malformed += 1;
                Action::Done
            }
        }
    }

    /// Answers "who has the router's HID" (hosts on a link without beacons ask).
    fn handle_xarp(&mut self, now: Instant, port: usize, payload: &[u8]) {
        let Ok(XarpRepr::Request { sender, sender_mac, target }) = XarpRepr::parse(payload) else {
            self.stats.drop_local += 1;
            return;
        };
        if target != self.hid {
            return;
        }
        if !self.xcmp_budget.take(now) {
            self.stats.xcmp_rate_limited += 1;
            return;
        }
        let wall = self.wall_ms(now);
        let f = self.xarp.reply(&self.key, self.hid, self.ports[port].mac, wall, sender, sender_mac);
        self.push_out(port, f);
    }

    fn send_xcmp_error(&mut self, now: Instant, packet: &[u8], kind: XcmpKind) {
        let p = xip::Packet::new_unchecked(packet);
        // Never an error about an error (nor about a packet whose source cannot be read).
        if p.validate().is_err() {
            return;
        }
        if p.next_header() == NextHeader::Xcmp {
            let payload = p.payload();
            if !matches!(payload.first(), Some(0 | 8)) {
                return;
            }
        }
        let Ok(src) = p.src_dag() else { return };
        if !self.xcmp_budget.take(now) {
            self.stats.xcmp_rate_limited += 1;
            return;
        }
        // As much of the packet as a frame of the smallest port holds (a large DAG's header
        // alone can be more).
        let mtu = self.ports.iter().map(|p| p.mtu).min().unwrap_or(0);
        let empty = match kind {
            XcmpKind::Unreachable(reason) => XcmpRepr::DstUnreachable { reason, original: &[] },
            XcmpKind::TimeExceeded => XcmpRepr::TimeExceeded { code: 0, original: &[] },
        };
        let head =
            XipRepr::new(NextHeader::Xcmp, src.clone(), self.dag(), 0).header_len() + empty.buffer_len();
        let quoted = xcmp::XcmpRepr::quote(packet);
        let original = &quoted[..quoted.len().min(mtu.saturating_sub(head))];
        let m = match kind {
            XcmpKind::Unreachable(reason) => XcmpRepr::DstUnreachable { reason, original },
            XcmpKind::TimeExceeded => XcmpRepr::TimeExceeded { code: 0, original },
        };
        let mut buf = vec![0u8; m.buffer_len()];
        if m.emit(&mut buf).is_ok() && self.originate(NextHeader::Xcmp, &src, &buf) {
            self.stats.xcmp_sent += 1;
        }
    }

    /// A packet whose intent is this router.
    fn deliver(&mut self, now: Instant, port: usize, from_mac: EthernetAddress, packet: &[u8]) {
        let p = xip::Packet::new_unchecked(packet);
        let Ok(x) = XipRepr::parse(&p) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let payload = p.payload();
        match x.next_header {
            NextHeader::Dgram if *x.dst.intent() == SID_XHCP || *x.dst.intent() == SID_XROUTE => {
                let Ok(d) = dgram::Packet::new_checked(payload).and_then(|q| DgramRepr::parse(&q)) else {
                    self.stats.drop_bad_control += 1;
                    return;
                };
                self.handle_control(now, port, from_mac, d.payload);
            }
            NextHeader::Xcmp => {
                let Ok(m) = xcmp::Packet::new_checked(payload).and_then(|q| XcmpRepr::parse(&q)) else {
                    self.stats.drop_local += 1;
                    return;
                };
                if let XcmpRepr::EchoRequest { ident, seq, data } = m {
                    let reply = echo_reply(ident, seq, data);
                    if let Some(buf) = reply.filter(|_| self.xcmp_budget.take(now)) {
                        let mut to = x.src.clone();
                        to.clear_visited();
                        if self.originate(NextHeader::Xcmp, &to, &buf) {
                            self.stats.xcmp_sent += 1;
                        }
                    }
                } else {
                    self.stats.drop_local += 1;
                }
            }
            NextHeader::Chunk => self.serve_from_cache(&x, payload),
            _ => self.stats.drop_local += 1,
        }
    }

    /// A CHUNK request whose CID this router has cached: answered from the cache, from a
    /// content DAG of this router (the requester matches answers by CID and request id).
    fn serve_from_cache(&mut self, x: &XipRepr, payload: &[u8]) {
        let Ok(c) = chunk_wire::Packet::new_checked(payload).and_then(|q| ChunkRepr::parse(&q)) else {
            self.stats.drop_local += 1;
            return;
        };
        let cid = *x.dst.intent();
        let data = match (&c, self.cache.as_mut().and_then(|s| s.get(&cid))) {
            (ChunkRepr::Request { .. }, Some(d)) => d,
            _ => {
                self.stats.drop_local += 1;
                return;
            }
        };
        // Hashed on first use, not on the way: the traffic that fills the cache pays a copy,
        // and only chunks asked for again pay the hash. A bad one is dropped with its request
        // (the requester asks again, and finds the way to the publisher).
        if self.unverified.remove(cid.id()).is_some() && Xid::cid_of(&data) != cid {
            self.stats.cache_chunks_corrupt += 1;
            if let Some(c) = self.cache.as_mut() {
                c.remove(&cid);
            }
            return;
        }
        let Ok(job) = ServeJob::new(data, &c, self.cfg.max_serve) else {
            self.stats.drop_local += 1;
            return;
        };
        let mut to = x.src.clone();
        to.clear_visited();
        let mut d = to.clone();
        let mut last = xia_core::wire::xip::LAST_NODE_ENTRY;
        let Ok(Selection::Forward { hop: (port, mac), .. }) = select(&mut d, &mut last, |x| self.lookup(x))
        else {
            self.stats.drop_unreachable += 1;
            return;
        };
        let Ok(src) = Dag::content(cid, self.ad, self.hid) else { return };
        let Some(header) = self.build_frame(port, mac, NextHeader::Chunk, &to, &src, &[]) else { return };
        if self.serving.len() >= MAX_SERVING {
            self.stats.drop_queue_full += 1;
            return;
        }
        self.stats.cache_hits += 1;
        self.serving.push_back(Serve { port, header, job });
    }

    /// A CHUNK packet being forwarded: a response's piece goes into the chunk it belongs to,
    /// which is cached once complete and verified against its CID.
    fn observe_chunk(&mut self, now: Instant, packet: &[u8]) {
        let p = xip::Packet::new_unchecked(packet);
        let Ok(ChunkRepr::Response { offset, total_len, data, .. }) =
            chunk_wire::Packet::new_checked(p.payload()).and_then(|q| ChunkRepr::parse(&q))
        else {
            return;
        };
        let Some(cid) = p.src_intent() else { return };
        if cid.principal() != Principal::Cid {
            return;
        }
        self.stats.cache_pieces_seen += 1;
        let total = total_len as usize;
        let (start, end) = (offset as usize, offset as usize + data.len());
        if total == 0
            || total > self.cfg.max_chunk
            || end > total
            || self.cache.as_ref().is_some_and(|c| c.contains(&cid))
        {
            return;
        }
        if !self.assembling.contains_key(cid.id()) {
            // Room for it: the oldest assemblies go first.
            while self.assembling_bytes + total > self.cfg.assembly_bytes
                || self.assembling.len() >= MAX_ASSEMBLIES
            {
                let Some((&old, _)) = self.assembling.iter().min_by_key(|(_, a)| a.touched) else { break };
                if let Some(a) = self.assembling.remove(&old) {
                    self.assembling_bytes -= a.total;
                    self.stats.cache_assemblies_dropped += 1;
                }
            }
            if self.assembling_bytes + total > self.cfg.assembly_bytes {
                return;
            }
            self.assembling_bytes += total;
            self.assembling.insert(
                *cid.id(),
                Assembly { data: Arc::new_uninit_slice(total), total, have: RangeSet::new(64), touched: now },
            );
        }
        let Some(a) = self.assembling.get_mut(cid.id()) else { return };
        if a.total != total {
            // Pieces disagree on the chunk's length: not a chunk worth keeping.
            self.assembling_bytes -= a.total;
            self.assembling.remove(cid.id());
            return;
        }
        a.touched = now;
        // Written straight into the memory the cache will keep: no copy when it completes.
        let Some(buf) = Arc::get_mut(&mut a.data) else { return };
        let dst = &mut buf[start..end];
        // SAFETY: `dst` is `data.len()` bytes of memory we own (a `MaybeUninit<u8>` has the
        // layout of a `u8`), and it cannot overlap `data` (a frame in the receive ring).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst.as_mut_ptr().cast::<u8>(), data.len()) };
        a.have.insert(start as u64, end as u64);
        if !a.have.contains(0, total as u64) {
            return;
        }
        let Some(a) = self.assembling.remove(cid.id()) else { return };
        self.assembling_bytes -= a.total;
        // SAFETY: every byte of 0..total lies in a range of `have`, and a range goes into
        // `have` only after its bytes were copied in (above; an insert refused for the range
        // limit records nothing).
        let data = unsafe { a.data.assume_init() };
        if let Some(c) = self.cache.as_mut() {
            c.insert_verified(cid, data);
            if self.unverified.len() >= 4096 {
                // Forget chunks the cache evicted since.
                let cache = &*c;
                self.unverified.retain(|id, _| cache.contains(&Xid::new(Principal::Cid, *id)));
            }
            self.unverified.insert(*cid.id(), ());
            self.stats.cache_chunks_stored += 1;
        }
    }

    fn handle_control(&mut self, now: Instant, port: usize, from_mac: EthernetAddress, msg: &[u8]) {
        let body = match control::open(msg) {
            Ok(b) => b,
            Err(e) => {
                self.stats.drop_bad_control += 1;
                // A patch with a bad signature is what an attacker would send.
                if control::inspect(msg).is_ok_and(|(b, _)| matches!(b, ControlBody::RoutePatch(_))) {
                    self.stats.patches_refused += 1;
                }
                tracing::debug!("control message refused: {e}");
                return;
            }
        };
        let wall = self.wall_ms(now);
        let window = self.cfg.control_window.as_millis() as u64;
        let stamp = body.stamp();
        if !stamp.is_fresh(wall, window) {
            self.stats.drop_stale_control += 1;
            if matches!(body, ControlBody::RoutePatch(_)) {
                self.stats.patches_refused += 1;
            }
            return;
        }
        match body {
            ControlBody::Beacon(b) => {
                let own = b.ad == self.ad && b.router_hid == self.hid;
                if !own && !self.seqs.beacon.check(&b.router_hid, stamp.seq, stamp.timestamp_ms, wall, window)
                {
                    self.stats.drop_stale_control += 1;
                    return;
                }
                self.handle_beacon(now, port, from_mac, &b)
            }
            ControlBody::HostRegister(r) => {
                if r.ad != self.ad || r.router != self.hid {
                    self.stats.drop_bad_control += 1;
                    return;
                }
                if !self.seqs.register.check(&r.hid, stamp.seq, stamp.timestamp_ms, wall, window) {
                    self.stats.drop_stale_control += 1;
                    return;
                }
                let lifetime = Duration::from_millis(u64::from(r.stamp.millis)).min(self.cfg.max_lifetime);
                if lifetime.is_zero() {
                    self.table_mut(Principal::Hid).routes.remove(r.hid.id());
                } else {
                    let route = Route {
                        target: Target::Via { port, mac: from_mac },
                        origin: Origin::Registered,
                        expires: Some(now + lifetime),
                        metric: 0,
                    };
                    if !self.learn(r.hid, route) {
                        self.stats.drop_bad_control += 1;
                        return;
                    }
                }
                self.stats.registrations += 1;
                let receipt = ControlBody::HostRegistered(HostRegistered {
                    hid: r.hid,
                    ad: self.ad,
                    router: self.hid,
                    stamp: Stamp {
                        seq: r.stamp.seq,
                        timestamp_ms: wall,
                        millis: lifetime.as_millis().min(u128::from(u32::MAX)) as u32,
                    },
                });
                let Ok(sealed) = receipt.seal(&self.ad_key) else { return };
                let dst = Dag::service(self.ad, r.hid, SID_XHCP).expect("distinct XIDs");
                let src = self.dag();
                self.queue_dgram(port, from_mac, &dst, &src, &sealed);
            }
            ControlBody::RoutePatch(p) => {
                let hid = p.hid();
                if !self.seqs.patch.check(&hid, stamp.seq, stamp.timestamp_ms, wall, window) {
                    self.stats.drop_stale_control += 1;
                    self.stats.patches_refused += 1;
                    tracing::debug!("replayed route patch for {hid} refused");
                    return;
                }
                if p.new_ad() == self.ad {
                    // The host is (back) in this AD: its registration routes it.
                    if self.route(&hid).is_some_and(|r| r.origin == Origin::Patched) {
                        self.table_mut(Principal::Hid).routes.remove(hid.id());
                    }
                    self.stats.patches_applied += 1;
                    return;
                }
                let lifetime = Duration::from_millis(u64::from(p.stamp.millis)).min(self.cfg.max_lifetime);
                let route = Route {
                    target: Target::FollowAd(p.new_ad()),
                    origin: Origin::Patched,
                    expires: Some(now + lifetime),
                    metric: 0,
                };
                if self.learn(hid, route) {
                    self.stats.patches_applied += 1;
                    tracing::info!("route patch: {hid} is now in {}", p.new_ad());
                } else {
                    self.stats.patches_refused += 1;
                }
            }
            ControlBody::AdRoutes(r) => {
                if !self.seqs.dv.check(&r.router_hid, stamp.seq, stamp.timestamp_ms, wall, window) {
                    self.stats.drop_stale_control += 1;
                    return;
                }
                self.handle_dv(now, port, from_mac, &r);
            }
            ControlBody::HostRegistered(_) => self.stats.drop_bad_control += 1,
        }
    }

    fn handle_beacon(&mut self, now: Instant, port: usize, from_mac: EthernetAddress, b: &Beacon) {
        if b.ad == self.ad && b.router_hid == self.hid {
            // Our own, looped back by a shared link.
            return;
        }
        self.stats.beacons_heard += 1;
        let interval = Duration::from_millis(u64::from(b.stamp.millis.max(1)));
        let expires = Some(now + (interval * self.cfg.beacon_routes_last).min(self.cfg.max_lifetime));
        let via = Target::Via { port, mac: from_mac };
        // The neighbour router itself, by HID.
        self.learn(b.router_hid, Route { target: via, origin: Origin::Beacon, expires, metric: 1 });
        if b.ad != self.ad {
            self.note_neighbour(now, port, interval);
            let had = self.route(&b.ad);
            self.learn(b.ad, Route { target: via, origin: Origin::Beacon, expires, metric: 1 });
            if had.is_none_or(|r| r.target != via || r.metric != 1) {
                tracing::debug!("{} is a neighbour on {}", b.ad, self.ports[port].name);
                self.dv_changed(now);
            }
        }
    }
}

/// The pages of a neighbour's distance vector round heard so far.
#[derive(Debug)]
struct DvRound {
    /// The round's first sequence number.
    id: u64,
    pages: u8,
    got: u8,
    ads: XidMap<()>,
}

/// Neighbour routers whose paged distance vectors are collected at once.
const MAX_DV_ROUNDS: usize = 64;

/// A chunk being put together from the pieces passing through.
#[derive(Debug)]
struct Assembly {
    /// The chunk's memory, written piece by piece (the bytes of `have` are initialized).
    data: Arc<[MaybeUninit<u8>]>,
    total: usize,
    have: RangeSet,
    touched: Instant,
}

/// Answers to a request, from the cache.
#[derive(Debug)]
struct Serve {
    port: usize,
    /// Ethernet and XIP headers of every piece (the payload length filled per piece).
    header: Vec<u8>,
    job: ServeJob,
}

/// Chunks being put together at once, at most.
const MAX_ASSEMBLIES: usize = 256;

/// Requests being answered from the cache at once, at most.
const MAX_SERVING: usize = 256;

#[derive(Debug, Clone, Copy)]
enum XcmpKind {
    Unreachable(Unreachable),
    TimeExceeded,
}

/// Last sequence number seen per signer, and the signer's time then.
#[derive(Debug, Default)]
struct SeqMap(XidMap<(u64, u64)>);

/// Signers remembered at most per kind of message.
const MAX_SIGNERS: usize = 1 << 18;

impl SeqMap {
    /// True (and remembered) when `seq` is above the last one seen from `who`. Entries older
    /// than the freshness window make room when the map is full: a replay of their messages
    /// would be refused as stale anyway. With no room, the message is refused.
    fn check(&mut self, who: &Xid, seq: u64, ts_ms: u64, now_ms: u64, window_ms: u64) -> bool {
        match self.0.get(who.id()) {
            Some(&(last, _)) if seq <= last => return false,
            None if self.0.len() >= MAX_SIGNERS => {
                self.0.retain(|_, (_, t)| now_ms.abs_diff(*t) <= window_ms);
                if self.0.len() >= MAX_SIGNERS {
                    return false;
                }
            }
            _ => {}
        }
        self.0.insert(*who.id(), (seq, ts_ms));
        true
    }
}

#[cfg(test)]
mod stats_tests {
    #[test]
    fn every_counter_is_listed() {
        let decl = include_str!("router.rs");
        let body =
            decl.split("pub struct RouterStats {").nth(1).and_then(|s| s.split('}').next()).unwrap_or("");
        let declared = body.matches(": u64,").count();
        assert_eq!(super::stats_fields(&super::RouterStats::default()).len(), declared);
    }
}
