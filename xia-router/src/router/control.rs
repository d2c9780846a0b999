//! Signed control messages, to and from this router: its beacons, and the beacons, host
//! registrations (answered with the AD's receipt), route patches and distance vectors it
//! receives, checked before they change any route, in this order, each refusal counted by its
//! cause:
//! 1. policy by the port it came in on (beacons and distance vectors not from access ports,
//!    registrations not from peering ports; [`super::PortRole`]), before any cryptography;
//! 2. signatures: the key behind every XID the message names (beacons and distance vectors are
//!    co-signed by the router they name), a route patch's receipt by the new AD;
//! 3. freshness: stamped within the window of the router's clock, and not before it started
//!    (less the clock skew allowed): a restarted router remembers no sequence numbers, so
//!    anything sent before it started could be a replay;
//! 4. the sequence number not ahead of its own timestamp ([`Stamp::seq_in_bounds`]), so no
//!    signer's mark can be pushed where its later messages would look replayed;
//! 5. trust anchors for other ADs' beacons and distance vectors ([`super::TrustAnchors`]);
//! 6. replay: a sequence number above the last one seen from the same signer (the identity
//!    that signed, never one a message merely claims), per kind of message.

use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::wire::control::{self, Beacon, ControlBody, ControlError, ControlKind, HostRegistered, Stamp};
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
        let Ok(msg) = body.seal_cosigned(&self.ad_key, &self.key) else { return };
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
        let kind = control::peek_kind(msg);
        let role = self.roles.get(port).copied().unwrap_or_default();
        let by_policy = match kind {
            Some(ControlKind::Beacon | ControlKind::AdRoutes) => !role.hears_routers(),
            Some(ControlKind::HostRegister) => !role.takes_hosts(),
            _ => false,
        };
        if by_policy {
            self.stats.drop_control_policy += 1;
            tracing::debug!("{kind:?} refused on {} ({role:?} port)", self.ports[port].name);
            return;
        }
        let is_patch = kind == Some(ControlKind::RoutePatch);
        let body = match control::open(msg) {
            Ok(b) => b,
            Err(e) => {
                match e {
                    ControlError::Key(_) => self.stats.drop_control_forged += 1,
                    ControlError::Wire(_) => self.stats.drop_bad_control += 1,
                }
                // A patch with a bad signature is what an attacker would send.
                if is_patch {
                    self.stats.patches_refused += 1;
                }
                tracing::debug!("control message refused: {e}");
                return;
            }
        };
        let wall = self.wall_ms(now);
        let window = self.cfg.control_window.as_millis() as u64;
        let stamp = body.stamp();
        let floor = self.boot_wall_ms.saturating_sub(self.cfg.max_clock_skew.as_millis() as u64);
        let refused = if !stamp.is_fresh(wall, window) || stamp.timestamp_ms < floor {
            Some(&mut self.stats.drop_stale_control)
        } else if !stamp.seq_in_bounds(window) {
            Some(&mut self.stats.drop_control_seq_jump)
        } else {
            None
        };
        if let Some(counter) = refused {
            *counter += 1;
            if is_patch {
                self.stats.patches_refused += 1;
            }
            return;
        }
        // Other ADs' announcements: only from ADs the operator trusts, if it says which.
        if let (ControlBody::Beacon(_) | ControlBody::AdRoutes(_), Some(anchors)) =
            (&body, &self.cfg.trust_anchors)
        {
            let signer = body.signer();
            if signer != self.ad && !anchors.trusts(&signer) {
                self.stats.drop_control_policy += 1;
                tracing::debug!("announcement of {signer} refused: not a trust anchor");
                return;
            }
        }
        match body {
            ControlBody::Beacon(b) => {
                let own = b.ad == self.ad && b.router_hid == self.hid;
                if !own && !self.seqs.beacon.check(&b.router_hid, stamp.seq, stamp.timestamp_ms, wall, window)
                {
                    self.stats.drop_control_replayed += 1;
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
                    self.stats.drop_control_replayed += 1;
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
                    self.stats.drop_control_replayed += 1;
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
            ControlBody::AdRoutes(mut r) => {
                if !self.seqs.dv.check(&r.router_hid, stamp.seq, stamp.timestamp_ms, wall, window) {
                    self.stats.drop_control_replayed += 1;
                    return;
                }
                if let Some(anchors) = &self.cfg.trust_anchors {
                    let before = r.routes.len();
                    r.routes.retain(|(ad, _)| anchors.may_announce(&r.ad, ad));
                    self.stats.dv_routes_refused += (before - r.routes.len()) as u64;
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

/// Sequence numbers per signer, per kind of message: replays are refused. Beacons and distance
/// vectors go by the router that co-signed them, registrations and patches by the host.
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
