//! Signed control messages, to and from this router: its beacons, and the beacons, host
//! registrations (answered with the AD's receipt), route patches and distance vectors it
//! receives, checked for signature, freshness and replay (a sequence number per signer and kind
//! of message) before they change any route.

use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::wire::control::{self, Beacon, ControlBody, HostRegistered, Stamp};
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid, XidMap, HID_BROADCAST, SID_XHCP};

use super::{Origin, Route, Router, Target};

impl Router {
    /// Beacons the AD (and its name server) on every port, signed by the AD key.
    pub(super) fn send_beacons(&mut self, now: Instant) {
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

    /// A control message for this router (its XHCP or XROUTE service), heard on `port` from
    /// `from_mac`: opened, checked for freshness and replay, then acted on.
    pub(super) fn handle_control(
        &mut self,
        now: Instant,
        port: usize,
        from_mac: EthernetAddress,
        msg: &[u8],
    ) {
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

    /// A neighbour router's beacon, heard on `port` from `from_mac`: the router is routed by
    /// its HID and, of another AD, its AD through it (until its beacons stop).
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

/// Per neighbour-AD and per-HID sequence numbers: replays are refused.
#[derive(Debug, Default)]
pub(super) struct Seqs {
    beacon: SeqMap,
    dv: SeqMap,
    register: SeqMap,
    patch: SeqMap,
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
