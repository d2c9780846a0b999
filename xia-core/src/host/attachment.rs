//! Attachment to an AD: the gateway's signed beacons, registration with it (and the AD's
//! receipt), losing it when beacons stop, and route patches after a move.

use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::wire::control::{self, ControlBody, HostRegister, Stamp};
use crate::wire::dgram::DgramRepr;
use crate::wire::ethernet::EthernetAddress;
use crate::wire::xip::NextHeader;
use crate::xid::{Xid, SID_XHCP};

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Gateway {
    pub(super) hid: Xid,
    pub(super) mac: EthernetAddress,
    pub(super) ad: Xid,
    pub(super) last_seq: u64,
    pub(super) name_server: Option<Dag>,
    /// Lost if no beacon comes before this.
    pub(super) expires: Instant,
}

#[derive(Debug)]
pub(super) struct Registration {
    pub(super) seq: u64,
    pub(super) next_at: Instant,
    pub(super) receipt: Option<Vec<u8>>,
}

impl Host {
    pub(super) fn handle_control(&mut self, now: Instant, src_mac: EthernetAddress, msg: &[u8]) {
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
    pub(super) fn lose_gateway(&mut self) {
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

    pub(super) fn send_registration(&mut self, now: Instant) {
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
}
