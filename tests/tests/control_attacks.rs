//! The control plane under attack, end to end on Fig. 1b: an attacker with keys of its own
//! sends crafted control frames, first from host C's access link, then from the link between
//! the two ADs (a tap, or a rogue router there), and replays a genuine route patch after R1
//! restarts. Pings between A, B and C cross the routers throughout; every attempt must be
//! refused and counted by its cause, and R1's routes must not change. Needs root.

use std::collections::HashMap;
use std::time::Duration;

use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::link::afpacket::PacketSocket;
use xia_core::wire::control::{
    self, AdRoutes, Beacon, ControlBody, HostRegister, HostRegistered, RoutePatch, Stamp,
};
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid, HID_BROADCAST, SID_XHCP, SID_XROUTE};
use xia_tests::probe::{mac_of, pings_received, raw, send_dgram, wall_ms, within, xping};
use xia_tests::{re_words, require_root, Child, Fig1, XRouter};

/// Keys of the attacker's own: an AD and a router HID it can sign for.
struct Attacker {
    ad: Keypair,
    router: Keypair,
}

impl Attacker {
    fn ad(&self) -> Xid {
        self.ad.xid(Principal::Ad)
    }
    fn hid(&self) -> Xid {
        self.router.xid(Principal::Hid)
    }
    /// `body` (of its own AD and router) signed and co-signed with its keys: valid.
    fn signed(&self, body: &ControlBody) -> Vec<u8> {
        forge(body, &self.ad, Some(&self.router), None)
    }
    /// Its own beacon with sequence number `seq`, then made to name `router` (a HID whose key
    /// it lacks: the signatures no longer check).
    fn beacon_naming(&self, seq: u64, router: &Xid) -> Vec<u8> {
        renamed(self.signed(&beacon(self.ad(), self.hid(), now_stamp(seq))), router)
    }
}

fn now_stamp(seq: u64) -> Stamp {
    Stamp { seq, timestamp_ms: wall_ms(), millis: 100 }
}

fn beacon(ad: Xid, router: Xid, stamp: Stamp) -> ControlBody {
    ControlBody::Beacon(Box::new(Beacon { ad, router_hid: router, stamp, name_server: None }))
}

fn ad_routes(ad: Xid, router: Xid, stamp: Stamp, routes: Vec<(Xid, u8)>) -> ControlBody {
    ControlBody::AdRoutes(Box::new(AdRoutes { ad, router_hid: router, stamp, routes, page: 0, pages: 1 }))
}

/// `body` signed by `key` and co-signed by `cosigner`'s key, then its trailers' public keys
/// replaced by `claimed_*` where given: what an attacker sends to name an identity whose key it
/// lacks (the signatures stay the attacker's, so they no longer check).
fn forge(
    body: &ControlBody,
    key: &Keypair,
    cosigner: Option<&Keypair>,
    swap_last_key: Option<&Keypair>,
) -> Vec<u8> {
    let mut msg = match cosigner {
        Some(c) => body.seal_cosigned(key, c).unwrap(),
        None => body.seal(key).unwrap(),
    };
    if let Some(k) = swap_last_key {
        let at = msg.len() - 96;
        msg[at..at + 32].copy_from_slice(&k.public().0);
    }
    msg
}

/// `body` with `body`'s router XID rewritten to `router` after sealing (bytes 28..52 of a beacon
/// or distance vector: header 4, AD 24): it names `router`, signed by keys that are not its.
fn renamed(mut msg: Vec<u8>, router: &Xid) -> Vec<u8> {
    msg[4 + 24 + 4..4 + 48].copy_from_slice(router.id());
    msg
}

/// A route patch for host `hid_key` (now in AD2 behind `r2`), with AD2's receipt: genuine,
/// or with the receipt's signature broken (`tamper`) and the patch signed over it again.
fn patch(hid_key: &Keypair, ad2_key: &Keypair, r2: Xid, tamper: bool) -> Vec<u8> {
    let stamp = Stamp { seq: control::seq_base(wall_ms()), timestamp_ms: wall_ms(), millis: 60_000 };
    let receipt = HostRegistered {
        hid: hid_key.xid(Principal::Hid),
        ad: ad2_key.xid(Principal::Ad),
        router: r2,
        stamp,
    };
    let mut sealed_receipt = ControlBody::HostRegistered(receipt).seal(ad2_key).unwrap();
    if tamper {
        *sealed_receipt.last_mut().unwrap() ^= 1;
    }
    ControlBody::RoutePatch(Box::new(RoutePatch { stamp, receipt, sealed_receipt })).seal(hid_key).unwrap()
}

/// R1's routes as `route show` prints them, without the time left to each.
fn routes(r1: &XRouter, f: &Fig1) -> Vec<String> {
    let text = r1.admin(&f.ns_r1, &["route", "show"]).unwrap();
    let mut v: Vec<String> =
        text.lines().map(|l| l.split(" expires ").next().unwrap_or(l).to_string()).collect();
    v.sort();
    v
}

/// Pings A -> B (both routers) and C -> A (R1) for `secs`, every 20 ms.
fn pings(f: &Fig1, secs: u32) -> [Child; 2] {
    let n = (secs * 50).to_string();
    let args = ["-c", n.as_str(), "-i", "0.02", "-W", "2"];
    [
        Child::spawn(xping(&f.ns_a, &f.a, &args, &re_words(&f.b.dag))).unwrap(),
        Child::spawn(xping(&f.ns_c, &f.c, &args, &re_words(&f.a.dag))).unwrap(),
    ]
}

fn none_lost(mut pings: [Child; 2], what: &str) {
    for (p, path) in pings.iter_mut().zip(["A -> B", "C -> A"]) {
        let out = p.wait_for_line(|l| l.contains("packets transmitted"), Duration::from_secs(60)).unwrap();
        let line = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or("");
        eprintln!("{what}, {path}: {line}");
        let sent: Option<u32> = line.split_whitespace().next().and_then(|n| n.parse().ok());
        assert!(sent.is_some_and(|n| n > 0), "{out}");
        assert_eq!(pings_received(&out), sent, "{what}: pings {path} lost\n{out}");
    }
}

/// Both ping paths answer (after a restart: hosts registered again, routes between ADs back).
fn reachable(f: &Fig1) -> bool {
    let ok = |c: std::process::Command| {
        let mut c = c;
        c.output().is_ok_and(|o| o.status.success())
    };
    ok(xping(&f.ns_a, &f.a, &["-c", "1", "-W", "1"], &re_words(&f.b.dag)))
        && ok(xping(&f.ns_c, &f.c, &["-c", "1", "-W", "1"], &re_words(&f.a.dag)))
}

/// Waits until R1's counters moved by at least `want` in total over `keys` since `before`.
fn counted(f: &Fig1, before: &HashMap<String, u64>, keys: &[&str], want: u64) -> HashMap<String, u64> {
    let mut last = before.clone();
    within(Duration::from_secs(5), || {
        last = f.r1.stats(&f.ns_r1).unwrap();
        keys.iter().map(|k| last[*k] - before[*k]).sum::<u64>() >= want
    });
    last
}

#[test]
fn forged_poisoned_replayed_and_misplaced_control_is_refused_counted_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let mut f = Fig1::new(true, 1500, false, false).unwrap();
    let key = |name: &str| Keypair::load(&f.dir.path().join(format!("{name}.key"))).unwrap();
    let (ad2_key, r2_key, a_key) = (key("ad2"), key("r2"), key("a"));
    let r2_hid = r2_key.xid(Principal::Hid);
    let ad2 = ad2_key.xid(Principal::Ad);
    let hid_a = a_key.xid(Principal::Hid);
    let evil = Attacker { ad: Keypair::from_seed([0x66; 32]), router: Keypair::from_seed([0x67; 32]) };
    let (evil_ad, evil_hid) = (evil.ad(), evil.hid());
    let bcast = |sid: Xid| Dag::linear(&[HID_BROADCAST, sid]).unwrap();
    let r1_dag = |f: &Fig1| -> Dag { format!("RE {} {} {SID_XHCP}", f.r1.ad, f.r1.hid).parse().unwrap() };
    let fake_src: Dag = Dag::host(evil_ad, evil_hid).unwrap();
    let all = [
        "drop_control_policy",
        "drop_control_forged",
        "drop_control_seq_jump",
        "drop_control_replayed",
        "drop_stale_control",
        "drop_bad_control",
    ];
    let poison = (1u64 << 63) - 1;

    // ---- 1. From C's access link.
    let mut c_link = raw(&f.ns_c, "eth0");
    let r1c = mac_of(&f.ns_r1, "r1c");
    let before_routes = routes(&f.r1, &f);
    let before = f.r1.stats(&f.ns_r1).unwrap();
    let p = pings(&f, 3);
    let send = |s: &mut PacketSocket, to: EthernetAddress, dst: &Dag, msg: &[u8]| {
        send_dgram(s, to, dst, &fake_src, msg).unwrap();
    };
    let seq = control::seq_base(wall_ms());
    // Its own AD key naming A's HID as its router; another AD's key naming R2; poisoning R2's
    // sequence numbers; a distance vector claiming AD2 at distance 0 (all validly signed where
    // the attacker has the keys): beacons and distance vectors from an access port.
    for (n, named) in [(seq, &hid_a), (seq + 1, &r2_hid), (poison, &r2_hid)] {
        send(&mut c_link, EthernetAddress::BROADCAST, &bcast(SID_XHCP), &evil.beacon_naming(n, named));
    }
    let dv = ad_routes(evil_ad, evil_hid, now_stamp(seq + 2), vec![(ad2, 0), (evil_ad, 0)]);
    send(&mut c_link, EthernetAddress::BROADCAST, &bcast(SID_XROUTE), &evil.signed(&dv));
    // Taken on an access port, but forged: a patch for A's HID signed by the attacker, a
    // registration of A's HID likewise, a patch whose receipt's signature is broken.
    let d_key = Keypair::from_seed([0x70; 32]);
    let mut patch_a = patch(&a_key, &ad2_key, r2_hid, false);
    let at = patch_a.len() - 96;
    patch_a[at..at + 32].copy_from_slice(&evil.router.public().0);
    let reg_a = ControlBody::HostRegister(HostRegister {
        hid: hid_a,
        ad: f.r1.ad.parse().unwrap(),
        router: f.r1.hid.parse().unwrap(),
        stamp: now_stamp(control::seq_base(wall_ms()) + 5),
    });
    let reg_a = forge(&reg_a, &a_key, None, Some(&evil.router));
    let bad_receipt = patch(&d_key, &ad2_key, r2_hid, true);
    let r1 = r1_dag(&f);
    for m in [&patch_a, &reg_a, &bad_receipt] {
        send(&mut c_link, r1c, &r1, m);
    }
    let s = counted(&f, &before, &all, 7);
    let d = |k: &str| s[k] - before[k];
    eprintln!("access link: {:?}", all.iter().map(|k| (*k, d(k))).collect::<Vec<_>>());
    assert_eq!((d("drop_control_policy"), d("drop_control_forged")), (4, 3), "{s:?}");
    assert_eq!(d("patches_refused"), 2, "{s:?}");
    none_lost(p, "attacks from the access link");
    assert_eq!(routes(&f.r1, &f), before_routes, "R1's routes changed");

    // ---- 2. A genuine patch (host D moved to AD2), captured; R1 restarts (trusting AD2 alone
    // to announce ADs); the capture is replayed.
    let genuine = patch(&d_key, &ad2_key, r2_hid, false);
    let stamped = wall_ms();
    send(&mut c_link, r1c, &r1, &genuine);
    let s = counted(&f, &before, &["patches_applied"], 1);
    assert_eq!(s["patches_applied"] - before["patches_applied"], 1, "{s:?}");
    let hid_d = d_key.xid(Principal::Hid).to_string();
    assert!(routes(&f.r1, &f).iter().any(|l| l.starts_with(&hid_d)), "D's patch applied");
    // Stamped more than the restarted router's allowed clock skew (200 ms) before it starts.
    let elapsed = wall_ms() - stamped;
    if elapsed < 300 {
        std::thread::sleep(Duration::from_millis(300 - elapsed));
    }
    f.r1.child.terminate().unwrap();
    let anchors = f.dir.path().join("anchors");
    std::fs::write(&anchors, format!("# AD2 may announce any AD\n{ad2} *\n")).unwrap();
    let anchors = anchors.to_str().unwrap().to_string();
    f.r1 = XRouter::start(
        &f.ns_r1,
        &["r1a", "r1c", "r1r2"],
        f.dir.path(),
        "r1",
        "ad1",
        &[
            "--access",
            "r1a",
            "--access",
            "r1c",
            "--peering",
            "r1r2",
            "--trust-anchors",
            &anchors,
            "--max-clock-skew-ms",
            "200",
        ],
    )
    .unwrap();
    let ad2_txt = ad2.to_string();
    let (a_txt, c_txt) = (hid_a.to_string(), f.c.dag.rsplit(' ').next().unwrap().to_string());
    within(Duration::from_secs(15), || {
        let r = routes(&f.r1, &f);
        [&ad2_txt, &a_txt, &c_txt].iter().all(|x| r.iter().any(|l| l.starts_with(x.as_str())))
    })
    .expect("A and C registered again, AD2 heard again");
    within(Duration::from_secs(15), || reachable(&f)).expect("A, B and C reach each other again");
    let before = f.r1.stats(&f.ns_r1).unwrap();
    let before_routes = routes(&f.r1, &f);
    let p = pings(&f, 3);
    send(&mut c_link, r1c, &r1, &genuine);
    let s = counted(&f, &before, &["drop_stale_control"], 1);
    assert_eq!(
        (
            s["drop_stale_control"] - before["drop_stale_control"],
            s["patches_refused"] - before["patches_refused"]
        ),
        (1, 1),
        "{s:?}"
    );
    assert!(!routes(&f.r1, &f).iter().any(|l| l.starts_with(&hid_d)), "the replay installed nothing");

    // ---- 3. From the link between the ADs (a tap on it, or a rogue router there).
    let mut peer_link = raw(f.ns_r2.as_ref().unwrap(), "r2r1");
    let seq = control::seq_base(wall_ms());
    // Another AD's key naming R2, co-signed by a key that is not R2's; the attacker's AD naming
    // A's HID; poisoning R2's numbers the same way; the attacker's own valid keys with a number
    // far ahead of its time (a beacon and a distance vector); a distance vector of the
    // attacker's own AD (valid) claiming AD2 at distance 0: not a trust anchor.
    for (n, named) in [(seq, &r2_hid), (seq + 1, &hid_a), (poison, &r2_hid)] {
        send(&mut peer_link, EthernetAddress::BROADCAST, &bcast(SID_XHCP), &evil.beacon_naming(n, named));
    }
    let dv =
        |seq: u64, routes: Vec<(Xid, u8)>| evil.signed(&ad_routes(evil_ad, evil_hid, now_stamp(seq), routes));
    let to_routers = [
        (SID_XROUTE, renamed(dv(poison, vec![(ad2, 0)]), &r2_hid)),
        (SID_XHCP, evil.signed(&beacon(evil_ad, evil_hid, now_stamp(poison)))),
        (SID_XROUTE, dv(poison, vec![(ad2, 0)])),
        (SID_XROUTE, dv(seq + 2, vec![(ad2, 0), (evil_ad, 0)])),
        (SID_XHCP, evil.signed(&beacon(evil_ad, evil_hid, now_stamp(seq + 3)))),
    ];
    for (sid, m) in &to_routers {
        send(&mut peer_link, EthernetAddress::BROADCAST, &bcast(*sid), m);
    }
    let s = counted(&f, &before, &all, 9);
    let d = |k: &str| s[k] - before[k];
    eprintln!("link between the ADs: {:?}", all.iter().map(|k| (*k, d(k))).collect::<Vec<_>>());
    assert_eq!(d("drop_control_forged"), 4, "{s:?}");
    assert_eq!(d("drop_control_seq_jump"), 2, "{s:?}");
    assert_eq!(d("drop_control_policy"), 2, "{s:?}");
    // R2's own announcements are still heard after all this.
    let heard = s["dv_heard"];
    within(Duration::from_secs(5), || f.r1.stats(&f.ns_r1).unwrap()["dv_heard"] > heard)
        .expect("R2 still heard");
    none_lost(p, "replay and attacks from the link between the ADs");
    assert_eq!(routes(&f.r1, &f), before_routes, "R1's routes changed");
}
