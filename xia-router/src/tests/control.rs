//! The control plane under attack, frame by frame: forged, poisoned, replayed and misplaced
//! control messages at a lone router, each refused, counted by its cause, changing no route.

use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::samples::frame as xip_frame;
use xia_core::wire::control::{self, AdRoutes, Beacon, ControlBody, HostRegister, Stamp};
use xia_core::wire::dgram::DgramRepr;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::wire::xip::{NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid, HID_BROADCAST, SID_XHCP, SID_XROUTE};

use super::{lone_router, mac, WALL};
use crate::router::{Router, RouterConfig, TrustAnchors};

/// An attacker's or a neighbour's keys: an AD key and a router (HID) key.
struct Signer {
    ad: Keypair,
    router: Keypair,
}

impl Signer {
    fn new(seed: u8) -> Signer {
        Signer { ad: Keypair::from_seed([seed; 32]), router: Keypair::from_seed([seed.wrapping_add(1); 32]) }
    }
    fn ad(&self) -> Xid {
        self.ad.xid(Principal::Ad)
    }
    fn hid(&self) -> Xid {
        self.router.xid(Principal::Hid)
    }
}

fn stamp(seq: u64, at_ms: u64) -> Stamp {
    Stamp { seq, timestamp_ms: at_ms, millis: 100 }
}

fn beacon(ad: Xid, router: Xid, s: Stamp) -> ControlBody {
    ControlBody::Beacon(Box::new(Beacon { ad, router_hid: router, stamp: s, name_server: None }))
}

fn dv(ad: Xid, router: Xid, s: Stamp, routes: Vec<(Xid, u8)>) -> ControlBody {
    ControlBody::AdRoutes(Box::new(AdRoutes { ad, router_hid: router, stamp: s, routes, page: 0, pages: 1 }))
}

/// `msg` to the router's `sid`, broadcast on its port `port` from a neighbour.
fn deliver(r: &mut Router, now: Instant, port: usize, sid: Xid, msg: &[u8]) {
    let d = DgramRepr { payload: msg };
    let mut dg = vec![0u8; d.buffer_len()];
    d.emit(&mut dg).unwrap();
    let dst = Dag::linear(&[HID_BROADCAST, sid]).unwrap();
    let src = Dag::host(Xid::new(Principal::Ad, [0x77; 20]), Xid::new(Principal::Hid, [0x78; 20])).unwrap();
    let x = XipRepr::new(NextHeader::Dgram, dst, src, dg.len());
    let mut f = xip_frame(mac(9, port), EthernetAddress::BROADCAST, &x, &dg);
    r.handle_frame(now, port, &mut f);
}

/// Every route as the tables hold it, with the forwarding generation (it moves on any change).
fn routes(r: &Router) -> (u64, Vec<String>) {
    (
        r.fib_generation(),
        r.routes().iter().map(|e| format!("{:?} {:?} {:?}", e.xid, e.route.target, e.route.origin)).collect(),
    )
}

#[test]
fn forged_poisoned_and_replayed_announcements_change_nothing() {
    let now = Instant::now();
    let mut r = lone_router(RouterConfig::default(), now);
    let wall = WALL;
    let neighbour = Signer::new(0x20);
    let attacker = Signer::new(0x40);
    let host_a = Keypair::from_seed([0x60; 32]).xid(Principal::Hid);
    // The neighbour's genuine beacon: its AD and router HID are learned.
    let genuine = beacon(neighbour.ad(), neighbour.hid(), stamp(control::seq_base(wall), wall));
    deliver(&mut r, now, 1, SID_XHCP, &genuine.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap());
    assert!(r.route(&neighbour.ad()).is_some() && r.route(&neighbour.hid()).is_some());
    let before = routes(&r);
    let s0 = r.stats();

    // The attacker's own AD key naming host A as its router: it cannot co-sign for A.
    let mut forged = beacon(attacker.ad(), host_a, stamp(control::seq_base(wall) + 1, wall))
        .seal_cosigned(&attacker.ad, &Keypair::from_seed([0x60; 32]))
        .unwrap();
    let co_at = forged.len() - 96;
    forged[co_at..co_at + 32].copy_from_slice(&attacker.router.public().0);
    deliver(&mut r, now, 0, SID_XHCP, &forged);
    // Another AD's key naming the neighbour's router, co-signed by the attacker's router key.
    let mut naming_r2 = beacon(attacker.ad(), neighbour.hid(), stamp(u64::MAX >> 1, wall))
        .seal_cosigned(&attacker.ad, &neighbour.router)
        .unwrap();
    naming_r2[co_at..co_at + 32].copy_from_slice(&attacker.router.public().0);
    deliver(&mut r, now, 0, SID_XHCP, &naming_r2);
    // The same for a distance vector claiming the neighbour's AD at distance 0.
    let mut dv_forged =
        dv(attacker.ad(), neighbour.hid(), stamp(u64::MAX >> 1, wall), vec![(neighbour.ad(), 0)])
            .seal_cosigned(&attacker.ad, &neighbour.router)
            .unwrap();
    let dv_co = dv_forged.len() - 96;
    dv_forged[dv_co..dv_co + 32].copy_from_slice(&attacker.router.public().0);
    deliver(&mut r, now, 0, SID_XROUTE, &dv_forged);
    let s = r.stats();
    assert_eq!(s.drop_control_forged - s0.drop_control_forged, 3, "{s:?}");

    // Poisoning with valid keys of its own: a sequence number far beyond its timestamp.
    let poisoned = beacon(attacker.ad(), attacker.hid(), stamp(u64::MAX >> 1, wall));
    deliver(&mut r, now, 0, SID_XHCP, &poisoned.seal_cosigned(&attacker.ad, &attacker.router).unwrap());
    assert_eq!(r.stats().drop_control_seq_jump, 1);
    assert_eq!(routes(&r), before, "no route changed");

    // The neighbour's next beacon still counts (nothing was recorded for it by the forgeries),
    // and a replay of the first does not.
    let next = beacon(neighbour.ad(), neighbour.hid(), stamp(control::seq_base(wall) + 1, wall + 100));
    deliver(&mut r, now, 1, SID_XHCP, &next.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap());
    deliver(&mut r, now, 1, SID_XHCP, &genuine.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap());
    let s = r.stats();
    assert_eq!((s.beacons_heard - s0.beacons_heard, s.drop_control_replayed), (1, 1), "{s:?}");
}

#[test]
fn a_restarted_router_refuses_what_was_sent_before_it_started() {
    let now = Instant::now();
    let neighbour = Signer::new(0x20);
    let old = beacon(neighbour.ad(), neighbour.hid(), stamp(control::seq_base(WALL - 4000), WALL - 4000));
    let msg = old.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap();
    // Fresh (within the 30 s window) but stamped 4 s before the router started.
    let mut r = lone_router(RouterConfig::default(), now);
    deliver(&mut r, now, 1, SID_XHCP, &msg);
    assert_eq!(r.stats().drop_stale_control, 1);
    assert!(r.route(&neighbour.ad()).is_none());
    // Within the clock skew allowed: taken.
    let late = beacon(neighbour.ad(), neighbour.hid(), stamp(control::seq_base(WALL - 500), WALL - 500));
    deliver(&mut r, now, 1, SID_XHCP, &late.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap());
    assert!(r.route(&neighbour.ad()).is_some());
}

#[test]
fn ports_and_trust_anchors_say_who_may_announce_what() {
    let now = Instant::now();
    let neighbour = Signer::new(0x20);
    let stranger = Signer::new(0x30);
    let far = Xid::new(Principal::Ad, [0x55; 20]);
    let elsewhere = Xid::new(Principal::Ad, [0x56; 20]);
    let anchors = TrustAnchors::parse(&format!("{} {far}\n", neighbour.ad())).unwrap();
    let cfg = RouterConfig {
        access_ports: vec!["p0".into()],
        peering_ports: vec!["p1".into()],
        trust_anchors: Some(anchors),
        ..RouterConfig::default()
    };
    let mut r = lone_router(cfg, now);
    let seq = control::seq_base(WALL);
    let b = |s: &Signer, n: u64| {
        beacon(s.ad(), s.hid(), stamp(seq + n, WALL)).seal_cosigned(&s.ad, &s.router).unwrap()
    };
    // A genuine neighbour beacon on the access port: refused by policy, before any signature.
    deliver(&mut r, now, 0, SID_XHCP, &b(&neighbour, 0));
    assert_eq!(r.stats().drop_control_policy, 1);
    assert!(r.route(&neighbour.ad()).is_none());
    // On the peering port: heard. A stranger's (not a trust anchor): refused.
    deliver(&mut r, now, 1, SID_XHCP, &b(&neighbour, 1));
    assert!(r.route(&neighbour.ad()).is_some());
    deliver(&mut r, now, 1, SID_XHCP, &b(&stranger, 0));
    assert_eq!(r.stats().drop_control_policy, 2);
    assert!(r.route(&stranger.ad()).is_none());
    // The neighbour's distance vector: `far` it may announce, `elsewhere` it may not.
    let v = dv(
        neighbour.ad(),
        neighbour.hid(),
        stamp(seq + 2, WALL),
        vec![(neighbour.ad(), 0), (far, 1), (elsewhere, 1)],
    );
    deliver(
        &mut r,
        now + Duration::from_millis(1),
        1,
        SID_XROUTE,
        &v.seal_cosigned(&neighbour.ad, &neighbour.router).unwrap(),
    );
    assert!(r.route(&far).is_some());
    assert!(r.route(&elsewhere).is_none());
    assert_eq!(r.stats().dv_routes_refused, 1);
    // A host registering on the peering port: refused by policy.
    let host = Keypair::from_seed([0x61; 32]);
    let reg = ControlBody::HostRegister(HostRegister {
        hid: host.xid(Principal::Hid),
        ad: r.ad(),
        router: r.hid(),
        stamp: Stamp { seq, timestamp_ms: WALL, millis: 10_000 },
    });
    deliver(&mut r, now, 1, SID_XHCP, &reg.seal(&host).unwrap());
    assert_eq!(r.stats().drop_control_policy, 3);
    assert!(r.route(&host.xid(Principal::Hid)).is_none());
    // On the access port it registers.
    deliver(&mut r, now, 0, SID_XHCP, &reg.seal(&host).unwrap());
    assert!(r.route(&host.xid(Principal::Hid)).is_some());
}
