//! Distance vectors between the routers of different ADs: each router sends its neighbour
//! routers (those whose beacons or vectors it hears, per port) the ADs it reaches and in how many
//! AD hops, signed by its AD key, periodically and soon after its AD routes change. A table
//! larger than a frame goes in pages of consecutive sequence numbers; once every page of a round
//! is in, what the neighbour no longer lists is withdrawn. Split horizon with poisoned reverse:
//! routes through a port are advertised there as unreachable.

use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::wire::control::{self, ControlBody, Stamp};
use xia_core::wire::dgram::DgramRepr;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::wire::xip::{NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid, XidMap, HID_BROADCAST, SID_XROUTE};

use super::{Origin, Route, Router, Target};

impl Router {
    /// AD routes changed: neighbours hear of it soon (at most every 20 ms).
    pub(super) fn dv_changed(&mut self, now: Instant) {
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

    pub(super) fn send_dv(&mut self, now: Instant) {
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
                let Ok(msg) = body.seal_cosigned(&self.ad_key, &self.key) else { continue };
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
    pub(super) fn note_neighbour(&mut self, now: Instant, port: usize, interval: Duration) {
        let until = now + interval * self.cfg.beacon_routes_last;
        let known = self.neighbour_ports[port].is_some_and(|u| u > now);
        self.neighbour_ports[port] = Some(until.max(self.neighbour_ports[port].unwrap_or(until)));
        if !known {
            tracing::debug!("a neighbour router on {}", self.ports[port].name);
            self.dv_changed(now);
        }
    }

    /// A neighbour router's distance vector, heard on `port` from `from_mac`.
    pub(super) fn handle_dv(
        &mut self,
        now: Instant,
        port: usize,
        from_mac: EthernetAddress,
        r: &control::AdRoutes,
    ) {
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
}

/// The pages of a neighbour's distance vector round heard so far.
#[derive(Debug)]
pub(super) struct DvRound {
    /// The round's first sequence number.
    id: u64,
    pages: u8,
    got: u8,
    ads: XidMap<()>,
}

/// Neighbour routers whose paged distance vectors are collected at once.
const MAX_DV_ROUNDS: usize = 64;
