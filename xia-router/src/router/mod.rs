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
//! - beacons its AD on every port (signed by the AD key and its own HID key); a router of
//!   another AD hearing the beacon learns a route to that AD through the sender, which expires
//!   when beacons stop;
//! - exchanges distance vectors with the routers of other ADs (signed likewise, the whole
//!   table each time, split horizon with poisoned reverse, sent periodically and at once when
//!   routes change), so that ADs several hops away are routed;
//! - registers hosts (their HID routes, signed by the HID key, expiring unless refreshed) and
//!   answers with the AD's receipt;
//! - takes route patches: "HID X is now in AD Y", signed by X's key and carrying Y's receipt;
//!   the HID's route then follows Y's route (packets to X's old DAG reach its new place);
//! - answers XCMP echo, and sends XCMP unreachable and time exceeded back to the source, at a
//!   bounded rate;
//! - refuses control messages that are not signed by every identity they name, stale, replayed
//!   (sequence numbers per signer, which may not run ahead of their timestamp; nothing stamped
//!   before the router started), or against the operator's policy (ports for hosts and ports
//!   for routers, trust anchors: `policy.rs`);
//! - counts every frame it drops, by reason.
//!
//! One struct, [`Router`], its methods in one file per concern (as smoltcp splits its
//! interface): this file has the configuration, the state, the timers, the forwarding path and
//! the frames the router makes; `tables.rs` the routes, `distance_vector.rs` the routes between
//! ADs, `control.rs` beacons, registrations and route patches, `cache.rs` the on-path chunk
//! cache, `xcmp.rs` XCMP and XARP answers, `stats.rs` the counters.

mod cache;
mod control;
mod distance_vector;
mod policy;
mod stats;
mod tables;
mod xcmp;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::node::{xip_frame, TokenBucket, WallClock, XarpResponder};
use xia_core::select::{select, select_from_entry, Selection};
use xia_core::transport::chunk::ContentStore;
use xia_core::wire::control::seq_base;
use xia_core::wire::dgram::{self, DgramRepr};
use xia_core::wire::ethernet::{self, EtherType, EthernetAddress};
use xia_core::wire::integrity;
use xia_core::wire::xcmp::Unreachable;
use xia_core::wire::xip::{self, NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid, XidMap, HID_BROADCAST, SID_XHCP, SID_XROUTE};

pub use policy::{PortRole, TrustAnchorError, TrustAnchors};
pub use stats::{stats_fields, RouterStats};
pub use tables::{Origin, Route, RouteEntry, RouteError, Target};

use cache::{Assembly, Serve};
use control::Seqs;
use distance_vector::DvRound;
use tables::Table;
use xcmp::XcmpKind;

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
    /// Ports for hosts only (by name): beacons and distance vectors heard there are refused.
    pub access_ports: Vec<String>,
    /// Ports for routers only (by name): host registrations heard there are refused.
    pub peering_ports: Vec<String>,
    /// ADs trusted to announce routes (`None`: any AD that proves its key).
    pub trust_anchors: Option<TrustAnchors>,
    /// How far behind the router's clock a sender's may be: messages stamped more than this
    /// before the router started are refused (a restarted router has forgotten what it saw
    /// before, so whatever was sent then may be a replay).
    pub max_clock_skew: Duration,
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
            access_ports: Vec::new(),
            peering_ports: Vec::new(),
            trust_anchors: None,
            max_clock_skew: Duration::from_secs(1),
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

/// What to do with a frame just handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame out of this port.
    Forward(usize),
    /// The router took it, or dropped it (counted).
    Done,
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
    /// Each port's role (from the configuration's port names).
    roles: Vec<PortRole>,
    /// The wall clock when the router started (ms): the floor of acceptable control stamps,
    /// less the allowed clock skew.
    boot_wall_ms: u64,
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
        let roles = ports
            .iter()
            .map(|p| {
                if cfg.access_ports.contains(&p.name) {
                    PortRole::Access
                } else if cfg.peering_ports.contains(&p.name) {
                    PortRole::Peering
                } else {
                    PortRole::Open
                }
            })
            .collect();
        let mut r = Router {
            xcmp_budget: TokenBucket::new(now, cfg.xcmp_rate, cfg.xcmp_rate),
            xarp: XarpResponder::default(),
            cfg: cfg.clone(),
            ad_key,
            key,
            ad,
            hid,
            ports,
            roles,
            boot_wall_ms: wall_ms,
            tables: Default::default(),
            fib_gen: 0,
            dv_rounds: XidMap::default(),
            seqs: Seqs::default(),
            beacon_seq: seq_base(wall_ms),
            next_beacon: now,
            dv_seq: seq_base(wall_ms),
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
            let expired = self.expire_routes(now);
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
        let hop = match select_from_entry(dst, |x| self.lookup(x)) {
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

    /// A packet whose intent is this router.
    fn deliver(&mut self, now: Instant, port: usize, from_mac: EthernetAddress, packet: &[u8]) {
        let p = xip::Packet::new_unchecked(packet);
        let Ok(x) = XipRepr::parse(&p) else {
            self.stats.drop_malformed += 1;
            return;
        };
        if integrity::verify(packet).is_err() {
            self.stats.bad_check += 1;
            return;
        }
        let payload = p.payload();
        match x.next_header {
            NextHeader::Dgram if *x.dst.intent() == SID_XHCP || *x.dst.intent() == SID_XROUTE => {
                let Ok(d) = dgram::Packet::new_checked(payload).and_then(|q| DgramRepr::parse(&q)) else {
                    self.stats.drop_bad_control += 1;
                    return;
                };
                self.handle_control(now, port, from_mac, d.payload);
            }
            NextHeader::Xcmp => self.handle_xcmp(now, &x, payload),
            NextHeader::Chunk => self.serve_from_cache(&x, payload),
            _ => self.stats.drop_local += 1,
        }
    }
}
