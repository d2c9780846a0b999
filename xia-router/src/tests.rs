//! Routers and hosts (xia-core's) on simulated links: the paper's topologies, in virtual time.

use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::host::{Host, HostConfig, HostEvent};
use xia_core::keys::Keypair;
use xia_core::link::sim::{SimConfig, SimLink};
use xia_core::samples::frame as xip_frame;
use xia_core::wire::control::{ControlBody, RoutePatch, Stamp};
use xia_core::wire::dgram::DgramRepr;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::wire::xip::{NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid, SID_XHCP};

use crate::router::{Origin, PortInfo, Router, RouterConfig, Target};

mod control;

const MTU: usize = 1500;
const WALL: u64 = 1_800_000_000_000;

#[derive(Debug)]
enum Node {
    Host(Box<Host>, Vec<HostEvent>),
    Router(Box<Router>),
}

/// One end of a link: node index and port.
type End = (usize, usize);

#[derive(Debug)]
struct Wire {
    a: End,
    b: End,
    ab: SimLink,
    ba: SimLink,
}

#[derive(Debug)]
struct World {
    now: Instant,
    nodes: Vec<Node>,
    wires: Vec<Wire>,
    buf: Vec<u8>,
    seed: u64,
}

/// A router with two ports and no neighbours, driven frame by frame.
fn lone_router(cfg: RouterConfig, now: Instant) -> Router {
    let ports = (0..2).map(|p| PortInfo { name: format!("p{p}"), mac: mac(0, p), mtu: MTU }).collect();
    Router::new(cfg, Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]), ports, now, WALL)
}

fn mac(node: usize, port: usize) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, node as u8, port as u8])
}

impl World {
    fn new(seed: u64) -> World {
        World { now: Instant::now(), nodes: Vec::new(), wires: Vec::new(), buf: vec![0; MTU + 14], seed }
    }

    fn host(&mut self, key_seed: u8) -> usize {
        let i = self.nodes.len();
        let cfg = HostConfig { mtu: MTU, seed: Some(self.seed + i as u64), ..HostConfig::default() };
        let h = Host::new(cfg, Keypair::from_seed([key_seed; 32]), mac(i, 0), self.now, WALL);
        self.nodes.push(Node::Host(Box::new(h), Vec::new()));
        i
    }

    fn router(&mut self, ad_seed: u8, key_seed: u8, ports: usize) -> usize {
        let i = self.nodes.len();
        let ports =
            (0..ports).map(|p| PortInfo { name: format!("p{p}"), mac: mac(i, p), mtu: MTU }).collect();
        let r = Router::new(
            RouterConfig::default(),
            Keypair::from_seed([ad_seed; 32]),
            Keypair::from_seed([key_seed; 32]),
            ports,
            self.now,
            WALL,
        );
        self.nodes.push(Node::Router(Box::new(r)));
        i
    }

    fn link(&mut self, a: End, b: End) -> usize {
        let s = self.seed + 100 * self.wires.len() as u64;
        let cfg = SimConfig::default();
        self.wires.push(Wire { a, b, ab: SimLink::new(cfg.clone(), s), ba: SimLink::new(cfg, s + 1) });
        self.wires.len() - 1
    }

    fn h(&mut self, i: usize) -> &mut Host {
        match &mut self.nodes[i] {
            Node::Host(h, _) => h,
            Node::Router(_) => panic!("node {i} is a router"),
        }
    }

    fn r(&mut self, i: usize) -> &mut Router {
        match &mut self.nodes[i] {
            Node::Router(r) => r,
            Node::Host(..) => panic!("node {i} is a host"),
        }
    }

    fn events(&mut self, i: usize) -> Vec<HostEvent> {
        match &mut self.nodes[i] {
            Node::Host(_, ev) => std::mem::take(ev),
            Node::Router(_) => Vec::new(),
        }
    }

    fn wire_from(&mut self, end: End, frame: Vec<u8>) {
        let now = self.now;
        for w in &mut self.wires {
            if w.a == end {
                w.ab.send(now, frame);
                return;
            } else if w.b == end {
                w.ba.send(now, frame);
                return;
            }
        }
    }

    /// Hands a frame to `end`'s node.
    fn receive(&mut self, end: End, mut frame: Vec<u8>) {
        let now = self.now;
        match &mut self.nodes[end.0] {
            Node::Host(h, _) => h.handle_frame(now, &frame),
            Node::Router(r) => {
                if let crate::router::Action::Forward(out) = r.handle_frame(now, end.1, &mut frame) {
                    self.wire_from((end.0, out), frame);
                }
            }
        }
    }

    /// Moves everything that is due; true if anything moved.
    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for i in 0..self.nodes.len() {
            let mut out = Vec::new();
            match &mut self.nodes[i] {
                Node::Host(h, ev) => {
                    if h.poll_timeout().is_some_and(|t| t <= now) {
                        h.handle_timeout(now);
                    }
                    while let Some(n) = h.poll_transmit(now, &mut self.buf) {
                        out.push((0, self.buf[..n].to_vec()));
                    }
                    while let Some(e) = h.poll_event() {
                        ev.push(e);
                    }
                }
                Node::Router(r) => {
                    if r.poll_timeout() <= now {
                        r.handle_timeout(now);
                    }
                    while let Some(f) = r.poll_transmit() {
                        out.push(f);
                    }
                }
            }
            for (port, f) in out {
                moved = true;
                self.wire_from((i, port), f);
            }
        }
        for w in 0..self.wires.len() {
            loop {
                let (a, b) = (self.wires[w].a, self.wires[w].b);
                if let Some(f) = self.wires[w].ab.poll_deliver(now) {
                    self.receive(b, f);
                } else if let Some(f) = self.wires[w].ba.poll_deliver(now) {
                    self.receive(a, f);
                } else {
                    break;
                }
                moved = true;
            }
        }
        moved
    }

    /// Runs for `d` of virtual time, in 1 ms ticks.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            while self.step() {}
            self.now += Duration::from_millis(1);
        }
    }

    /// Runs until `done` holds, at most `d`.
    fn run_until(&mut self, d: Duration, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let end = self.now + d;
        while self.now < end {
            while self.step() {}
            if done(self) {
                return true;
            }
            self.now += Duration::from_millis(1);
        }
        false
    }

    /// Pings `dst` from host `from`; the events of the ping.
    fn ping(&mut self, from: usize, dst: &Dag) -> Vec<HostEvent> {
        let now = self.now;
        let p = self.h(from).ping_open();
        self.h(from).ping_send(now, p, dst, 1, b"hello").expect("ping sent");
        let mut got = Vec::new();
        self.run_until(Duration::from_secs(1), |w| {
            got.extend(w.events(from).into_iter().filter(|e| {
                matches!(e, HostEvent::EchoReply { owner, .. } | HostEvent::EchoError { owner, .. } if *owner == p)
            }));
            !got.is_empty()
        });
        got
    }
}

/// Fig. 1a: hosts A, B, C and router R1, one AD.
fn fig1a() -> (World, [usize; 4]) {
    let mut w = World::new(1);
    let r1 = w.router(0xa1, 0xb1, 3);
    let a = w.host(1);
    let b = w.host(2);
    let c = w.host(3);
    w.link((a, 0), (r1, 0));
    w.link((b, 0), (r1, 1));
    w.link((c, 0), (r1, 2));
    (w, [r1, a, b, c])
}

/// Fig. 1b: R1 (AD1) with A and C, R2 (AD2) with B; R1 and R2 linked.
fn fig1b() -> (World, [usize; 5]) {
    let mut w = World::new(2);
    let r1 = w.router(0xa1, 0xb1, 3);
    let r2 = w.router(0xa2, 0xb2, 2);
    let a = w.host(1);
    let b = w.host(2);
    let c = w.host(3);
    w.link((a, 0), (r1, 0));
    w.link((c, 0), (r1, 1));
    w.link((r1, 2), (r2, 0));
    w.link((b, 0), (r2, 1));
    (w, [r1, r2, a, b, c])
}

fn registered(w: &mut World, hosts: &[usize]) -> bool {
    hosts.iter().all(|&h| w.h(h).registration_receipt().is_some())
}

#[test]
fn fig1a_hosts_attach_register_and_ping_through_the_router() {
    let (mut w, [r1, a, b, c]) = fig1a();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])), "hosts registered");
    let ad1 = w.r(r1).ad();
    for h in [a, b, c] {
        assert_eq!(w.h(h).ad(), Some(ad1));
        assert_eq!(w.h(h).gateway(), Some(w.r(r1).hid()));
        let hid = w.h(h).hid();
        assert_eq!(w.r(r1).route(&hid).map(|r| r.origin), Some(Origin::Registered));
    }
    for dst in [a, b] {
        let dag = w.h(dst).dag();
        let ev = w.ping(c, &dag);
        assert!(matches!(ev.as_slice(), [HostEvent::EchoReply { .. }]), "C pings {dst}: {ev:?}");
    }
    // The router answers pings itself.
    let rdag = w.r(r1).dag();
    assert!(matches!(w.ping(c, &rdag).as_slice(), [HostEvent::EchoReply { .. }]));
    assert!(w.r(r1).stats().forwarded >= 4);
}

#[test]
fn unknown_ad_gets_unreachable_and_the_fallback_edge_delivers() {
    let (mut w, [r1, a, _b, c]) = fig1a();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    let nowhere = Xid::new(Principal::Ad, [0x77; 20]);
    let hid_a = w.h(a).hid();
    let ev = w.ping(c, &Dag::host(nowhere, hid_a).unwrap());
    assert!(
        matches!(
            ev.as_slice(),
            [HostEvent::EchoError { kind: xia_core::wire::xcmp::Message::DstUnreachable, code: 0, .. }]
        ),
        "no route to the AD: {ev:?}"
    );
    assert_eq!(w.r(r1).stats().drop_unreachable, 1);
    // The same with AD1 as the fallback of the unknown AD: delivered.
    let ad1 = w.r(r1).ad();
    let dag = Dag::from_paths(&[&[nowhere, hid_a], &[ad1, hid_a]]).unwrap();
    let ev = w.ping(c, &dag);
    assert!(matches!(ev.as_slice(), [HostEvent::EchoReply { .. }]), "over the fallback: {ev:?}");
}

#[test]
fn fig1b_routers_learn_each_others_ad_and_forward_across() {
    let (mut w, [r1, r2, a, b, c]) = fig1b();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])));
    let (ad1, ad2) = (w.r(r1).ad(), w.r(r2).ad());
    assert_eq!(w.h(a).ad(), Some(ad1));
    assert_eq!(w.h(b).ad(), Some(ad2));
    assert_eq!(w.r(r1).route(&ad2).map(|r| r.origin), Some(Origin::Beacon));
    assert_eq!(w.r(r2).route(&ad1).map(|r| r.origin), Some(Origin::Beacon));
    let dag_b = w.h(b).dag();
    let dag_a = w.h(a).dag();
    assert!(matches!(w.ping(c, &dag_b).as_slice(), [HostEvent::EchoReply { .. }]));
    assert!(matches!(w.ping(b, &dag_a).as_slice(), [HostEvent::EchoReply { .. }]));
    // Routes refreshed by beacons and registrations, going nowhere new: the forwarding
    // generation (what the XDP fast path keys its memory on) stays; a change moves it.
    let gen = w.r(r1).fib_generation();
    w.run(Duration::from_millis(500));
    assert_eq!(w.r(r1).fib_generation(), gen);
    let somewhere = Xid::new(Principal::Ad, [0x5a; 20]);
    w.r(r1).add_route(Principal::Ad, Some(somewhere), Target::Fallback).unwrap();
    assert!(w.r(r1).fib_generation() > gen);
    // Beacons stop (the link goes): the learned route expires.
    w.wires[2].ab = SimLink::new(SimConfig::impaired(1.0, 0.0, 0.0), 9);
    w.wires[2].ba = SimLink::new(SimConfig::impaired(1.0, 0.0, 0.0), 10);
    w.run(Duration::from_secs(1));
    assert_eq!(w.r(r1).route(&ad2), None);
    assert!(w.r(r1).stats().routes_expired >= 1);
}

/// A route patch for `host` (now registered in its new AD), signed by `key`.
fn patch_frame(
    w: &mut World,
    host: usize,
    key: &Keypair,
    seq: u64,
    to_router: usize,
    port: usize,
) -> Vec<u8> {
    let receipt = w.h(host).registration_receipt().expect("registered").to_vec();
    let Ok(ControlBody::HostRegistered(r)) = xia_core::wire::control::open(&receipt) else {
        panic!("receipt")
    };
    let now = w.now;
    let wall = w.r(to_router).wall_ms(now);
    let body = ControlBody::RoutePatch(Box::new(RoutePatch {
        stamp: Stamp { seq, timestamp_ms: wall, millis: 60_000 },
        receipt: r,
        sealed_receipt: receipt,
    }));
    let msg = body.seal(key).expect("seal");
    let d = DgramRepr { payload: &msg };
    let mut dg = vec![0u8; d.buffer_len()];
    d.emit(&mut dg).unwrap();
    let (rad, rhid) = (w.r(to_router).ad(), w.r(to_router).hid());
    let dst = Dag::service(rad, rhid, SID_XHCP).unwrap();
    let src = w.h(host).service_dag(SID_XHCP);
    let x = XipRepr::new(NextHeader::Dgram, dst, src, dg.len());
    let rmac = w.r(to_router).ports()[port].mac;
    xip_frame(mac(99, 0), rmac, &x, &dg)
}

#[test]
fn a_patched_hid_route_sends_traffic_for_the_old_dag_to_the_new_ad() {
    // A (key 1) starts in AD1; a second host with A's key (the moved VM) sits in AD2.
    let (mut w, [r1, r2, a, b, c]) = fig1b();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])));
    let old_dag = w.h(a).dag();
    // A moves: its link to R1 goes, and "A" comes up behind R2 (a new port on a new wire).
    w.wires[0].ab = SimLink::new(SimConfig::impaired(1.0, 0.0, 0.0), 9);
    w.wires[0].ba = SimLink::new(SimConfig::impaired(1.0, 0.0, 0.0), 10);
    let moved = w.host(1);
    // R2 gets a third port: rebuild it with one (its state is only beacons and registrations).
    let r2_ports: Vec<PortInfo> =
        (0..3).map(|p| PortInfo { name: format!("p{p}"), mac: mac(r2, p), mtu: MTU }).collect();
    let now = w.now;
    let wall = w.r(r2).wall_ms(now);
    *w.r(r2) = Router::new(
        RouterConfig::default(),
        Keypair::from_seed([0xa2; 32]),
        Keypair::from_seed([0xb2; 32]),
        r2_ports,
        now,
        wall,
    );
    w.link((moved, 0), (r2, 2));
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[moved, b])));
    // The restarted R2's beacons are news to R1 (sequence numbers follow the clock).
    w.run(Duration::from_secs(1));
    let ad2 = w.r(r2).ad();
    assert_eq!(w.r(r1).route(&ad2).map(|r| r.origin), Some(Origin::Beacon));
    let key = Keypair::from_seed([1; 32]);
    // Before the patch, R1 still has A's registration (to the dead link): the ping is lost.
    assert!(w.ping(c, &old_dag).is_empty());
    // A patch signed by someone else is refused and counted.
    let rogue = Keypair::from_seed([0x66; 32]);
    let mut forged = patch_frame(&mut w, moved, &key, 1, r1, 1);
    let sig_at = forged.len() - 96;
    forged[sig_at..sig_at + 32].copy_from_slice(&rogue.public().0);
    xia_core::wire::integrity::seal_frame(&mut forged);
    w.receive((r1, 1), forged);
    assert_eq!(w.r(r1).stats().patches_refused, 1);
    // The real one is applied; packets to the old DAG reach the host in AD2.
    let f = patch_frame(&mut w, moved, &key, 1, r1, 1);
    w.receive((r1, 1), f.clone());
    assert_eq!(w.r(r1).stats().patches_applied, 1);
    let hid = w.h(moved).hid();
    assert_eq!(w.r(r1).route(&hid).map(|r| r.target), Some(Target::FollowAd(ad2)));
    let ev = w.ping(c, &old_dag);
    assert!(matches!(ev.as_slice(), [HostEvent::EchoReply { .. }]), "old DAG after the patch: {ev:?}");
    // A replay is refused.
    w.receive((r1, 1), f);
    assert_eq!(w.r(r1).stats().patches_refused, 2);
    assert_eq!(w.r(r1).stats().patches_applied, 1);
}

#[test]
fn hop_limit_exhaustion_gets_time_exceeded() {
    let (mut w, [r1, a, _b, c]) = fig1a();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    // A ping from C to A with hop limit 1, built by hand.
    let x = XipRepr { hop_limit: 1, ..XipRepr::new(NextHeader::Xcmp, w.h(a).dag(), w.h(c).dag(), 13) };
    let echo = xia_core::wire::xcmp::XcmpRepr::EchoRequest { ident: 7, seq: 1, data: b"hello" };
    let mut payload = vec![0u8; echo.buffer_len()];
    echo.emit(&mut payload).unwrap();
    let rmac = w.r(r1).ports()[2].mac;
    let f = xip_frame(w.h(c).mac(), rmac, &x, &payload);
    let before = w.r(r1).stats();
    w.receive((r1, 2), f);
    let after = w.r(r1).stats();
    assert_eq!(after.drop_hop_limit, before.drop_hop_limit + 1);
    assert_eq!(after.xcmp_sent, before.xcmp_sent + 1);
    let (port, out) = w.r(r1).poll_transmit().expect("time exceeded sent");
    assert_eq!(port, 2);
    let p = xia_core::wire::xip::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.next_header(), NextHeader::Xcmp);
    assert_eq!(p.payload()[0], 11, "XCMP time exceeded");
}

#[test]
fn garbage_is_counted_and_survived() {
    let (mut w, [r1, a, _b, c]) = fig1a();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    let mut rng = xia_core::rng::Rng::new(5);
    let template = w.h(a).dag();
    let x = XipRepr::new(NextHeader::Xcmp, template, w.h(c).dag(), 16);
    let rmac = w.r(r1).ports()[2].mac;
    let good = xip_frame(w.h(c).mac(), rmac, &x, &[0; 16]);
    for i in 0..20_000 {
        let mut f = good.clone();
        match i % 3 {
            0 => {
                let n = rng.below(f.len() as u64) as usize;
                f.truncate(n.max(1));
            }
            1 => {
                for _ in 0..4 {
                    let k = 14 + rng.below((f.len() - 14) as u64) as usize;
                    f[k] = rng.next_u64() as u8;
                }
            }
            _ => rng.fill(&mut f[14..]),
        }
        let now = w.now;
        let _ = w.r(r1).handle_frame(now, 2, &mut f);
        while w.r(r1).poll_transmit().is_some() {}
    }
    let s = w.r(r1).stats();
    assert!(s.drop_malformed > 5000, "{s:?}");
    assert!(s.xcmp_sent <= 1000 + 10, "XCMP errors are rate-limited: {s:?}");
    // Still routing.
    let dag = w.h(a).dag();
    w.run(Duration::from_secs(1));
    assert!(matches!(w.ping(c, &dag).as_slice(), [HostEvent::EchoReply { .. }]));
}

/// Fetches `cid` from `dag` at host `h`; the fetched bytes.
fn fetch(w: &mut World, h: usize, cid: Xid, dag: &Dag) -> Option<Vec<u8>> {
    let now = w.now;
    let owner = w.h(h).fetch_owner();
    w.h(h).chunk_fetch(now, owner, cid, dag.clone(), None, 7);
    let mut got = None;
    w.run_until(Duration::from_secs(5), |w| {
        for e in w.events(h) {
            if let HostEvent::ChunkDone { tag: 7, result, .. } = e {
                got = Some(result.ok());
            }
        }
        got.is_some()
    });
    got.flatten()
}

#[test]
fn the_chunk_cache_answers_a_repeated_fetch() {
    let (mut w, [r1, r2, a, b, c]) = fig1b();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])));
    // B publishes 1 MiB; A (AD1) fetches it through R2 and R1, which cache it on the way.
    let mut data = vec![0u8; 1 << 20];
    xia_core::rng::Rng::new(3).fill(&mut data);
    let cid = w.h(b).chunk_put(data.clone().into()).unwrap();
    let dag = w.h(b).content_dag(cid);
    assert_eq!(fetch(&mut w, a, cid, &dag).as_deref(), Some(&data[..]));
    for r in [r1, r2] {
        let s = w.r(r).stats();
        assert_eq!(s.cache_chunks_stored, 1, "{s:?}");
        assert_eq!(s.cache_hits, 0);
    }
    // C, also in AD1, fetches it again: R1 answers; B sees no new request.
    let served = w.h(b).stats().chunk_requests_served;
    assert_eq!(fetch(&mut w, c, cid, &dag).as_deref(), Some(&data[..]));
    assert!(w.r(r1).stats().cache_hits >= 1);
    assert_eq!(w.h(b).stats().chunk_requests_served, served, "the publisher was not asked again");
}

#[test]
fn corrupt_chunks_are_cached_but_never_served() {
    let cfg = RouterConfig { cache_bytes: 1 << 20, ..RouterConfig::default() };
    let now = Instant::now();
    let mut r = lone_router(cfg, now);
    let hop = mac(5, 0);
    let ad_x = Xid::new(Principal::Ad, [0x0a; 20]);
    let hid_x = Xid::new(Principal::Hid, [0x0d; 20]);
    r.add_route(Principal::Ad, Some(ad_x), Target::Via { port: 1, mac: hop }).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let cid = Xid::cid_of(&data);
    // Pieces from the publisher (in AD X) to a host also routed through port 1: what matters
    // is that they pass through the router.
    let publisher = Dag::content(cid, ad_x, hid_x).unwrap();
    let frame = |dst: &Dag, src: &Dag, payload: &[u8]| {
        let x = XipRepr::new(NextHeader::Chunk, dst.clone(), src.clone(), payload.len());
        xip_frame(mac(9, 0), mac(0, 0), &x, payload)
    };
    let to_host = Dag::host(ad_x, Xid::new(Principal::Hid, [0x0e; 20])).unwrap();
    let piece = |offset: usize, bytes: &[u8]| {
        let c = xia_core::wire::chunk::ChunkRepr::Response {
            request_id: 1,
            offset: offset as u32,
            total_len: 3000,
            no_store: false,
            data: bytes,
        };
        let mut p = vec![0u8; c.buffer_len()];
        c.emit(&mut p).unwrap();
        frame(&to_host, &publisher, &p)
    };
    let request = || {
        let c = xia_core::wire::chunk::ChunkRepr::Request { request_id: 9, offset: 0, length: 0 };
        let mut p = vec![0u8; c.buffer_len()];
        c.emit(&mut p).unwrap();
        frame(&publisher, &to_host, &p)
    };
    // One byte wrong, out of order and with a duplicate: put together and cached...
    let mut bad = data.clone();
    bad[2000] ^= 1;
    for (off, chunk) in
        [(2000, &bad[2000..]), (0, &bad[..1000]), (2000, &bad[2000..]), (1000, &bad[1000..2000])]
    {
        assert_eq!(r.handle_frame(now, 0, &mut piece(off, chunk)), crate::router::Action::Forward(1));
    }
    assert_eq!(r.stats().cache_chunks_stored, 1);
    // ...but the first request finds it bad: dropped, never served.
    assert_eq!(r.handle_frame(now, 0, &mut request()), crate::router::Action::Done);
    assert_eq!((r.stats().cache_chunks_corrupt, r.stats().cache_hits), (1, 0));
    assert!(r.poll_transmit().is_none());
    // The next request goes on to the publisher.
    assert_eq!(r.handle_frame(now, 0, &mut request()), crate::router::Action::Forward(1));
    // The right bytes, out of order, overlapping and leaving a gap until the last piece:
    // cached, and served exactly.
    for (off, chunk) in
        [(2000, &data[2000..]), (0, &data[..900]), (1700, &data[1700..2100]), (800, &data[800..1800])]
    {
        r.handle_frame(now, 0, &mut piece(off, chunk));
    }
    assert_eq!(r.handle_frame(now, 0, &mut request()), crate::router::Action::Done);
    assert_eq!(r.stats().cache_hits, 1);
    let mut got = vec![0u8; 3000];
    while let Some((_, f)) = r.poll_transmit() {
        let p = xia_core::wire::xip::Packet::new_checked(&f[14..]).unwrap();
        if let Ok(xia_core::wire::chunk::ChunkRepr::Response { offset, data, .. }) =
            xia_core::wire::chunk::Packet::new_checked(p.payload())
                .and_then(|q| xia_core::wire::chunk::ChunkRepr::parse(&q))
        {
            got[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
    }
    assert_eq!(got, data);
}

/// Three ADs in a line: A - R1 (AD1) - R2 (AD2) - R3 (AD3) - C.
fn chain() -> (World, [usize; 5]) {
    let mut w = World::new(4);
    let r1 = w.router(0xa1, 0xb1, 2);
    let r2 = w.router(0xa2, 0xb2, 2);
    let r3 = w.router(0xa3, 0xb3, 2);
    let a = w.host(1);
    let c = w.host(3);
    w.link((a, 0), (r1, 0));
    w.link((r1, 1), (r2, 0));
    w.link((r2, 1), (r3, 0));
    w.link((c, 0), (r3, 1));
    (w, [r1, r2, r3, a, c])
}

fn cut(w: &mut World, wire: usize, down: bool) {
    let loss = if down { 1.0 } else { 0.0 };
    w.wires[wire].ab = SimLink::new(SimConfig::impaired(loss, 0.0, 0.0), 20 + wire as u64);
    w.wires[wire].ba = SimLink::new(SimConfig::impaired(loss, 0.0, 0.0), 30 + wire as u64);
}

#[test]
fn distance_vectors_route_across_several_ads_and_converge_when_links_come_and_go() {
    let (mut w, [r1, r2, r3, a, c]) = chain();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    let ad3 = w.r(r3).ad();
    // R1 learns AD3 (two hops, through R2) from R2's distance vector.
    assert!(w.run_until(Duration::from_secs(2), |w| w.r(r1).route(&ad3).is_some()));
    let r = w.r(r1).route(&ad3).unwrap();
    assert_eq!((r.origin, r.metric), (Origin::Routing, 2));
    let dag_c = w.h(c).dag();
    let dag_a = w.h(a).dag();
    assert!(
        matches!(w.ping(a, &dag_c).as_slice(), [HostEvent::EchoReply { .. }]),
        "A to C over two routers' hops"
    );
    assert!(matches!(w.ping(c, &dag_a).as_slice(), [HostEvent::EchoReply { .. }]));
    assert!(w.r(r2).stats().dv_heard > 0 && w.r(r1).stats().drop_bad_control == 0);

    // The R2-R3 link goes down: R2 loses AD3 with R3's beacons; R1 hears it from R2.
    cut(&mut w, 2, true);
    let t = w.now;
    assert!(w.run_until(Duration::from_secs(5), |w| w.r(r1).route(&ad3).is_none()), "R1 forgets AD3");
    let took = w.now - t;
    assert!(took < Duration::from_secs(2), "converged in {took:?}");
    let ev = w.ping(a, &dag_c);
    assert!(
        matches!(
            ev.as_slice(),
            [HostEvent::EchoError { kind: xia_core::wire::xcmp::Message::DstUnreachable, .. }]
        ),
        "no route to AD3 now: {ev:?}"
    );
    // Up again: back within a few beacon intervals.
    cut(&mut w, 2, false);
    let t = w.now;
    let ad1 = w.r(r1).ad();
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.r(r1).route(&ad3).is_some()
            && w.r(r3)
                .route(&ad1)
                .is_some_and(|r| r.expires.is_some_and(|e| e > w.now + Duration::from_millis(1000)))),
        "R1 relearns AD3, R3 AD1"
    );
    assert!(w.now - t < Duration::from_millis(300), "reconverged in {:?}", w.now - t);
    assert!(matches!(w.ping(a, &dag_c).as_slice(), [HostEvent::EchoReply { .. }]));
    // No route ever loops back: R2's route to AD1 goes to R1, and R1 never routes AD1 away.
    assert_eq!(w.r(r1).route(&ad1).map(|r| r.origin), Some(Origin::Own));
}

#[test]
fn a_router_going_away_takes_its_routes_with_it() {
    // R1 - R2 - R3 in a line; R2 restarts (a new process, same keys): routes through it come
    // back once its beacons and vectors do.
    let (mut w, [r1, r2, r3, a, c]) = chain();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    let ad3 = w.r(r3).ad();
    assert!(w.run_until(Duration::from_secs(2), |w| w.r(r1).route(&ad3).is_some()));
    cut(&mut w, 1, true);
    cut(&mut w, 2, true);
    assert!(w.run_until(Duration::from_secs(5), |w| w.r(r1).route(&ad3).is_none()));
    let now = w.now;
    // The same clock as every other node's.
    let wall = w.r(r2).wall_ms(now);
    let ports = (0..2).map(|p| PortInfo { name: format!("p{p}"), mac: mac(r2, p), mtu: MTU }).collect();
    *w.r(r2) = Router::new(
        RouterConfig::default(),
        Keypair::from_seed([0xa2; 32]),
        Keypair::from_seed([0xb2; 32]),
        ports,
        now,
        wall,
    );
    cut(&mut w, 1, false);
    cut(&mut w, 2, false);
    assert!(w.run_until(Duration::from_secs(2), |w| w.r(r1).route(&ad3).is_some()));
    let dag_c = w.h(c).dag();
    assert!(matches!(w.ping(a, &dag_c).as_slice(), [HostEvent::EchoReply { .. }]));
}

#[test]
fn hosts_register_again_at_once_when_their_router_restarts() {
    let (mut w, [r1, a, b, c]) = fig1a();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])));
    let now = w.now;
    let wall = w.r(r1).wall_ms(now);
    let ports = (0..3).map(|p| PortInfo { name: format!("p{p}"), mac: mac(r1, p), mtu: MTU }).collect();
    *w.r(r1) = Router::new(
        RouterConfig::default(),
        Keypair::from_seed([0xa1; 32]),
        Keypair::from_seed([0xb1; 32]),
        ports,
        now,
        wall,
    );
    let hid_a = w.h(a).hid();
    let t = w.now;
    assert!(w.run_until(Duration::from_secs(5), |w| w.r(r1).route(&hid_a).is_some()), "A registers again");
    assert!(w.now - t < Duration::from_millis(300), "within a few beacons: {:?}", w.now - t);
    let dag_a = w.h(a).dag();
    assert!(matches!(w.ping(c, &dag_a).as_slice(), [HostEvent::EchoReply { .. }]));
}

#[test]
fn chunks_cross_a_congested_router_link() {
    // Fig. 1b with R2 -> R1 a slow link with a short queue: drops come in bursts, as from a
    // router that cannot keep up.
    let (mut w, [r1, r2, a, b, c]) = fig1b();
    let slow = SimConfig { rate_bps: Some(200_000_000), queue_limit: 48, ..SimConfig::default() };
    w.wires[2].ba = SimLink::new(slow, 77);
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, b, c])));
    let _ = (r1, r2);
    let mut rng = xia_core::rng::Rng::new(9);
    let mut cids = Vec::new();
    for _ in 0..16 {
        let mut data = vec![0u8; 1 << 20];
        rng.fill(&mut data);
        let cid = w.h(b).chunk_put(data.into()).unwrap();
        cids.push(cid);
    }
    let now = w.now;
    let owner = w.h(a).fetch_owner();
    for (i, cid) in cids.iter().enumerate() {
        let dag = w.h(b).content_dag(*cid);
        w.h(a).chunk_fetch(now, owner, *cid, dag, None, i as u64);
    }
    let mut done = 0;
    let mut failed = Vec::new();
    w.run_until(Duration::from_secs(60), |w| {
        for e in w.events(a) {
            if let HostEvent::ChunkDone { tag, result, .. } = e {
                done += 1;
                if let Err(err) = result {
                    failed.push((tag, err));
                }
            }
        }
        done == cids.len()
    });
    // 16 MiB through 200 Mbit/s takes 0.67 s at best. Before requests shrank with the window
    // and a timeout gave up on every expired request, each request lost its tail to the short
    // queue and the fetches timed out.
    let took = w.now - now;
    let over = w.wires[2].ba.stats();
    assert!(over.overflowed > 0, "the link was congested: {over:?}");
    // 16 MiB through 200 Mbit/s takes 0.67 s at best; losing every request's tail to a short
    // queue took minutes (and failed) before requests shrank with the window.
    assert!(took < Duration::from_secs(3), "took {took:?}; fetch {:?}", w.h(a).fetch_stats());
    assert!(
        failed.is_empty() && done == cids.len(),
        "{done} done, failed {failed:?}; link {over:?}; fetch {:?}",
        w.h(a).fetch_stats()
    );
}

#[test]
fn broadcast_frames_are_not_forwarded() {
    let now = Instant::now();
    let mut r = lone_router(RouterConfig::default(), now);
    let ad_x = Xid::new(Principal::Ad, [0x0a; 20]);
    r.add_route(Principal::Ad, Some(ad_x), Target::Via { port: 1, mac: mac(5, 0) }).unwrap();
    let dst = Dag::host(ad_x, Xid::new(Principal::Hid, [0x0d; 20])).unwrap();
    let src = Dag::host(Xid::new(Principal::Ad, [0x0b; 20]), Xid::new(Principal::Hid, [0x0c; 20])).unwrap();
    let x = XipRepr::new(NextHeader::Dgram, dst, src, 0);
    let frame = |to: EthernetAddress| xip_frame(mac(9, 0), to, &x, &[]);
    assert_eq!(r.handle_frame(now, 0, &mut frame(EthernetAddress::BROADCAST)), crate::router::Action::Done);
    assert_eq!(r.stats().drop_not_for_us, 1);
    assert_eq!(r.handle_frame(now, 0, &mut frame(mac(0, 0))), crate::router::Action::Forward(1));
}

/// More ADs than one frame of the link holds (~40 at MTU 1500): distance vectors go in pages,
/// every AD is learned two routers away, and ADs that go are withdrawn once a whole round of
/// pages no longer lists them.
#[test]
fn distance_vectors_larger_than_a_frame_go_in_pages() {
    let (mut w, [r1, r2, r3, a, c]) = chain();
    assert!(w.run_until(Duration::from_secs(2), |w| registered(w, &[a, c])));
    let far: Vec<Xid> = (0..150u32)
        .map(|i| {
            let mut id = [0x77; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            Xid::new(Principal::Ad, id)
        })
        .collect();
    for ad in &far {
        w.r(r3).add_route(Principal::Ad, Some(*ad), Target::Via { port: 1, mac: mac(4, 0) }).unwrap();
    }
    let sent = w.r(r3).stats().dv_sent;
    assert!(
        w.run_until(Duration::from_secs(3), |w| far.iter().all(|ad| w.r(r1).route(ad).is_some())),
        "R1 learns all {} ADs behind R3",
        far.len()
    );
    assert_eq!(w.r(r1).route(&far[0]).map(|r| (r.origin, r.metric)), Some((Origin::Routing, 3)));
    // Several messages per round: R3 sends a round every 500 ms to R2 only.
    let rounds = w.r(r3).stats().dv_sent - sent;
    assert!(rounds >= 4, "pages sent: {rounds}");
    assert_eq!(w.r(r1).stats().drop_bad_control + w.r(r2).stats().drop_bad_control, 0);
    // 60 of them go at R3: withdrawn along the line; the others stay.
    for ad in &far[..60] {
        w.r(r3).del_route(Principal::Ad, Some(*ad)).unwrap();
    }
    assert!(
        w.run_until(Duration::from_secs(3), |w| far[..60].iter().all(|ad| w.r(r1).route(ad).is_none())),
        "R1 forgets the ADs R3 no longer routes"
    );
    assert!(far[60..].iter().all(|ad| w.r(r1).route(ad).is_some()));
}

/// An error about a packet with large DAGs quotes what fits: the XCMP frame never exceeds the
/// port's MTU (the quoted header alone can be longer than a frame).
#[test]
fn xcmp_errors_about_large_packets_fit_the_link() {
    let now = Instant::now();
    let mut r = lone_router(RouterConfig::default(), now);
    let node = |p: Principal, i: u8| Xid::new(p, [i; 20]);
    // 20 unknown ADs, then a host: unreachable. From a 20-node source DAG reached via port 0.
    let dst: Vec<Xid> =
        (1..=19).map(|i| node(Principal::Ad, i)).chain([node(Principal::Hid, 0x40)]).collect();
    let src: Vec<Xid> =
        (0x50..0x63).map(|i| node(Principal::Ad, i)).chain([node(Principal::Hid, 0x70)]).collect();
    r.add_route(Principal::Ad, Some(src[0]), Target::Via { port: 0, mac: mac(9, 0) }).unwrap();
    let x = XipRepr::new(NextHeader::Dgram, Dag::linear(&dst).unwrap(), Dag::linear(&src).unwrap(), 8);
    let mut f = xip_frame(mac(9, 0), mac(0, 0), &x, &[0; 8]);
    assert!(f.len() <= MTU + 14);
    assert_eq!(r.handle_frame(now, 0, &mut f), crate::router::Action::Done);
    let (port, err) = r.poll_transmit().expect("an XCMP error");
    assert_eq!(port, 0);
    assert!(err.len() <= MTU + 14, "{} bytes", err.len());
    let p = xia_core::wire::xip::Packet::new_checked(&err[14..]).unwrap();
    assert_eq!(p.next_header(), NextHeader::Xcmp);
    assert_eq!(r.stats().xcmp_sent, 1);
}
