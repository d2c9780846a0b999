//! Where a host sends what it sends: the shared DAG selection over its own view (local XIDs,
//! the gateway, neighbours on the link), and whole frames built for it.

use std::time::Instant;

use crate::dag::Dag;
use crate::node::xip_frame;
use crate::select::{select_from_entry, Lookup, Selection};
use crate::wire::ethernet::EthernetAddress;
use crate::wire::xip::NextHeader;
use crate::xid::{Principal, Xid, HID_BROADCAST, SID_XHCP};

use super::*;

/// Where a frame goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hop {
    Mac(EthernetAddress),
    /// An HID on the link whose MAC must be found first.
    Resolve(Xid),
}

#[derive(Debug)]
pub(super) enum Route {
    /// For this very host.
    Local,
    /// Where it goes next.
    Out(Hop),
    Unreachable,
}

impl Host {
    pub(super) fn lookup(&self, x: &Xid) -> Lookup<Hop> {
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

    pub(super) fn route(&self, dst: &Dag) -> Route {
        match select_from_entry(dst, |x| self.lookup(x)) {
            Ok(Selection::Deliver) => Route::Local,
            Ok(Selection::Forward { hop, .. }) => Route::Out(hop),
            _ => Route::Unreachable,
        }
    }

    /// A whole frame for `payload` to `dst`, or where it must wait; `None` when unreachable.
    pub(super) fn frame_for(
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
        let dst_mac = match hop {
            Some(Hop::Mac(m)) => m,
            _ => self.mac,
        };
        let f = xip_frame(self.mac, dst_mac, self.cfg.mtu, next, dst, src, payload)?;
        Some((f, hop))
    }

    /// Queues a packet; false if there is no route.
    pub(super) fn send_packet(
        &mut self,
        now: Instant,
        next: NextHeader,
        dst: &Dag,
        src: &Dag,
        payload: &[u8],
    ) -> bool {
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
}
