//! The forwarding tables: one exact-match table per principal (AD, HID, SID, CID, IP), each
//! with an optional default, and what a route is (where it leads, how it came to be, when it
//! goes). Routes are added and deleted by the admin, learned from beacons, registrations, route
//! patches and distance vectors, looked up by the forwarding path, and expired by the timer;
//! every change that may alter a forwarding decision moves the forwarding generation on.

use std::time::Instant;

use xia_core::select::Lookup;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid, XidMap};

use super::Router;

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

/// The routes of one principal.
#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) routes: XidMap<Route>,
    pub(super) default: Option<Route>,
}

/// The principals with a table, in the order of `Router::tables`.
pub(super) const TABLES: [Principal; 5] =
    [Principal::Ad, Principal::Hid, Principal::Sid, Principal::Cid, Principal::Ip];

/// Where `p`'s table is in `Router::tables` (`None`: a principal without one).
pub(super) fn table_index(p: Principal) -> Option<usize> {
    match p {
        Principal::Ad => Some(0),
        Principal::Hid => Some(1),
        Principal::Sid => Some(2),
        Principal::Cid => Some(3),
        Principal::Ip => Some(4),
        _ => None,
    }
}

impl Router {
    /// The table of `p`, if it has one.
    pub(super) fn table(&self, p: Principal) -> Option<&Table> {
        table_index(p).map(|i| &self.tables[i])
    }

    /// A table to change (the forwarding generation moves on: every change through here is
    /// taken as one).
    pub(super) fn table_mut(&mut self, p: Principal) -> &mut Table {
        self.fib_gen += 1;
        // Only called with the principals of TABLES.
        &mut self.tables[table_index(p).unwrap_or(0)]
    }

    /// A number that changes whenever what the tables say about some XID may have changed: a
    /// forwarding decision remembered elsewhere (the XDP fast path) holds only while it stays.
    pub fn fib_generation(&self) -> u64 {
        self.fib_gen
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
    pub(super) fn learn(&mut self, xid: Xid, route: Route) -> bool {
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
    pub(super) fn lookup(&self, x: &Xid) -> Lookup<(usize, EthernetAddress)> {
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

    /// Drops the routes whose time is up; how many went.
    pub(super) fn expire_routes(&mut self, now: Instant) -> u64 {
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
        expired
    }
}
