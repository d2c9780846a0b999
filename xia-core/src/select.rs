//! Next-hop selection over a DAG: the one function routers and hosts share.
//!
//! Prototype semantics: start at node `last` (the entry when it is [`crate::wire::xip::LAST_NODE_ENTRY`]); try its
//! out-edges in order. For each target, look its XID up in the table of its principal:
//! - a next hop: forward there (`last` unchanged: the next node starts where we did);
//! - local: this node is satisfied; mark the edge visited, move `last` to it and, unless it is
//!   the intent (deliver), continue from it;
//! - fallback or no entry: try the next edge.
//!
//! No usable edge: unreachable. The function works on anything that exposes the DAG's nodes
//! ([`DagNodes`]), so a router runs it in place on the packet buffer and a host on a [`Dag`].

use crate::dag::{Dag, EDGE_EMPTY, EDGE_INDEX, MAX_EDGES, MAX_NODES};
use crate::wire::xip::LAST_NODE_ENTRY;
use crate::xid::Xid;

/// Read/write access to the nodes of a DAG, in wire layout.
pub trait DagNodes {
    /// Number of nodes.
    fn node_count(&self) -> usize;
    /// XID of node `i` (`i < node_count()`).
    fn node_xid(&self, i: usize) -> Xid;
    /// Edge bytes of node `i`.
    fn node_edges(&self, i: usize) -> [u8; MAX_EDGES];
    /// Sets the visited bit of edge `slot` of node `i` (the only change selection makes).
    fn mark_visited(&mut self, i: usize, slot: usize);
}

/// What a node's table says about one XID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<H> {
    /// The XID is this node (or one of its services, contents, its AD...).
    Local,
    /// Forward towards this next hop.
    NextHop(H),
    /// The table says explicitly: use the next edge.
    Fallback,
    /// No entry and no default.
    Miss,
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<H> {
    /// The intent is local: hand the packet up.
    Deliver,
    /// Send the packet to `hop`; `target` is the index of the node it is heading for.
    Forward {
        /// The next hop from the table.
        hop: H,
        /// Index of the DAG node the hop was found for.
        target: usize,
    },
    /// No edge of node `at` (`None`: the entry) could be used.
    Unreachable {
        /// Where progress stopped.
        at: Option<usize>,
    },
}

/// Why selection could not even start: the DAG or `last` is malformed. Routers drop such packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// `last` is neither the entry marker nor a node index.
    #[error("last node {0} is out of range")]
    BadLastNode(u8),
    /// The DAG has no nodes.
    #[error("empty DAG")]
    Empty,
    /// More nodes than a DAG may have.
    #[error("{0} nodes, more than a DAG may have")]
    TooManyNodes(usize),
    /// An edge points outside the DAG or backwards.
    #[error("edge of node {node:?} points to {target}, which is not a later node")]
    BadEdge {
        /// Node holding the edge (`None`: entry).
        node: Option<usize>,
        /// The edge's target.
        target: usize,
    },
}

/// Runs the selection on `dag` from `*last`, updating `*last` and visited bits as nodes are
/// satisfied locally. `lookup` is called once per edge tried.
///
/// Checks every index it follows, so it is safe on unvalidated packet bytes. The updates made
/// before an outcome stay: a packet found unreachable after some local nodes carries the
/// advanced `last` (an XCMP error quoting it shows how far it got, as in the prototype).
#[inline]
pub fn select<D, H, F>(dag: &mut D, last: &mut u8, mut lookup: F) -> Result<Selection<H>, SelectError>
where
    D: DagNodes + ?Sized,
    F: FnMut(&Xid) -> Lookup<H>,
{
    let n = dag.node_count();
    if n == 0 {
        return Err(SelectError::Empty);
    }
    if n > MAX_NODES {
        return Err(SelectError::TooManyNodes(n));
    }
    let sink = n - 1;
    let mut cur: Option<usize> = match *last {
        LAST_NODE_ENTRY => None,
        l if usize::from(l) < n => Some(usize::from(l)),
        l => return Err(SelectError::BadLastNode(l)),
    };
    // Each step moves `cur` strictly forward, so this ends after at most n steps.
    'node: loop {
        if cur == Some(sink) {
            return Ok(Selection::Deliver);
        }
        let holder = cur.unwrap_or(sink);
        let edges = dag.node_edges(holder);
        for (slot, &e) in edges.iter().enumerate() {
            if e == EDGE_EMPTY {
                break;
            }
            let t = usize::from(e & EDGE_INDEX);
            if t >= n || cur.is_some_and(|c| t <= c) {
                return Err(SelectError::BadEdge { node: cur, target: t });
            }
            match lookup(&dag.node_xid(t)) {
                Lookup::Local => {
                    dag.mark_visited(holder, slot);
                    // t < n <= MAX_NODES < LAST_NODE_ENTRY, so it fits and means a node.
                    *last = t as u8;
                    cur = Some(t);
                    continue 'node;
                }
                Lookup::NextHop(hop) => return Ok(Selection::Forward { hop, target: t }),
                Lookup::Fallback | Lookup::Miss => {}
            }
        }
        return Ok(Selection::Unreachable { at: cur });
    }
}

/// The decision for a packet this node is about to send to `dst` from the start (its own
/// packets, answers): [`select`] on a copy of `dst` from the entry node, so `dst` is untouched.
pub fn select_from_entry<H, F>(dst: &Dag, lookup: F) -> Result<Selection<H>, SelectError>
where
    F: FnMut(&Xid) -> Lookup<H>,
{
    let mut d = dst.clone();
    let mut last = LAST_NODE_ENTRY;
    select(&mut d, &mut last, lookup)
}

impl DagNodes for Dag {
    fn node_count(&self) -> usize {
        self.len()
    }
    fn node_xid(&self, i: usize) -> Xid {
        self.nodes()[i].xid
    }
    fn node_edges(&self, i: usize) -> [u8; MAX_EDGES] {
        self.nodes()[i].edges
    }
    fn mark_visited(&mut self, i: usize, slot: usize) {
        Dag::mark_visited(self, i, slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{Node, EDGE_VISITED};
    use crate::xid::Principal;
    use std::collections::HashMap;

    fn x(p: Principal, b: u8) -> Xid {
        Xid::new(p, [b; 20])
    }

    fn table(entries: &[(Xid, Lookup<u32>)]) -> impl FnMut(&Xid) -> Lookup<u32> + '_ {
        let m: HashMap<Xid, Lookup<u32>> = entries.iter().copied().collect();
        move |x| m.get(x).copied().unwrap_or(Lookup::Miss)
    }

    #[test]
    fn router_forwards_on_the_intent_path() {
        let (ad, hid, sid) = (x(Principal::Ad, 1), x(Principal::Hid, 2), x(Principal::Sid, 3));
        let mut d = Dag::service(ad, hid, sid).unwrap();
        let mut last = LAST_NODE_ENTRY;
        let r = select(&mut d, &mut last, table(&[(ad, Lookup::NextHop(7))])).unwrap();
        assert_eq!(r, Selection::Forward { hop: 7, target: 0 });
        assert_eq!(last, LAST_NODE_ENTRY);
    }

    #[test]
    fn local_nodes_advance_last_and_mark_visited() {
        let (ad, hid, sid) = (x(Principal::Ad, 1), x(Principal::Hid, 2), x(Principal::Sid, 3));
        let mut d = Dag::service(ad, hid, sid).unwrap();
        let mut last = LAST_NODE_ENTRY;
        // The destination AD's router: AD local, HID next hop.
        let r = select(&mut d, &mut last, table(&[(ad, Lookup::Local), (hid, Lookup::NextHop(3))])).unwrap();
        assert_eq!(r, Selection::Forward { hop: 3, target: 1 });
        assert_eq!(last, 0);
        assert_eq!(d.nodes()[2].edges[0], EDGE_VISITED, "entry edge to node 0 visited");
        // The host: HID and SID local.
        let r = select(&mut d, &mut last, table(&[(hid, Lookup::Local), (sid, Lookup::Local)])).unwrap();
        assert_eq!(r, Selection::Deliver);
        assert_eq!(last, 2);
        assert_eq!(d.nodes()[0].edges[0], 1 | EDGE_VISITED);
        assert_eq!(d.nodes()[1].edges[0], 2 | EDGE_VISITED);
    }

    #[test]
    fn fallback_edges_are_tried_in_order() {
        let ip: Xid = "IP:10.0.0.1".parse().unwrap();
        let (ad, hid) = (x(Principal::Ad, 1), x(Principal::Hid, 2));
        let mut d = Dag::with_fallback(&[ip], &[ad, hid]).unwrap();
        let mut last = LAST_NODE_ENTRY;
        let r = select(&mut d, &mut last, table(&[(ip, Lookup::NextHop(9))])).unwrap();
        assert_eq!(r, Selection::Forward { hop: 9, target: 0 });
        // An explicit Fallback on the AD behaves like a miss.
        let mut last = LAST_NODE_ENTRY;
        let r =
            select(&mut d, &mut last, table(&[(ad, Lookup::Fallback), (ip, Lookup::NextHop(9))])).unwrap();
        assert_eq!(r, Selection::Forward { hop: 9, target: 0 });
        // Primary wins when both are known.
        let mut last = LAST_NODE_ENTRY;
        let r =
            select(&mut d, &mut last, table(&[(ad, Lookup::NextHop(1)), (ip, Lookup::NextHop(9))])).unwrap();
        assert_eq!(r, Selection::Forward { hop: 1, target: 1 });
    }

    #[test]
    fn unreachable_reports_where_it_stopped() {
        let (ad, hid) = (x(Principal::Ad, 1), x(Principal::Hid, 2));
        let mut d = Dag::host(ad, hid).unwrap();
        let mut last = LAST_NODE_ENTRY;
        assert_eq!(select(&mut d, &mut last, table(&[])).unwrap(), Selection::Unreachable { at: None });
        let mut last = LAST_NODE_ENTRY;
        let r = select(&mut d, &mut last, table(&[(ad, Lookup::Local)])).unwrap();
        assert_eq!(r, Selection::Unreachable { at: Some(0) });
        assert_eq!(last, 0);
    }

    #[test]
    fn content_dag_served_by_a_cache_or_the_publisher() {
        let (cid, ad, hid) = (x(Principal::Cid, 9), x(Principal::Ad, 1), x(Principal::Hid, 2));
        let d = Dag::content(cid, ad, hid).unwrap();
        // A router that knows the CID sends straight there.
        let mut last = LAST_NODE_ENTRY;
        let r =
            select(&mut d.clone(), &mut last, table(&[(cid, Lookup::NextHop(4)), (ad, Lookup::NextHop(5))]));
        assert_eq!(r.unwrap(), Selection::Forward { hop: 4, target: 2 });
        // The publisher: AD local, HID local, CID local.
        let mut last = LAST_NODE_ENTRY;
        let r = select(
            &mut d.clone(),
            &mut last,
            table(&[(ad, Lookup::Local), (hid, Lookup::Local), (cid, Lookup::Local)]),
        );
        assert_eq!(r.unwrap(), Selection::Deliver);
        assert_eq!(last, 2);
    }

    #[test]
    fn bad_last_node_and_edges_are_errors() {
        let (ad, hid) = (x(Principal::Ad, 1), x(Principal::Hid, 2));
        let mut d = Dag::host(ad, hid).unwrap();
        let mut last = 5;
        assert_eq!(select(&mut d, &mut last, table(&[])), Err(SelectError::BadLastNode(5)));
        // Unvalidated nodes, as a hostile packet could carry: an edge pointing backwards.
        let mut d = RawNodes(vec![
            Node { xid: ad, edges: [0, EDGE_EMPTY, EDGE_EMPTY, EDGE_EMPTY] },
            Node { xid: hid, edges: [0, EDGE_EMPTY, EDGE_EMPTY, EDGE_EMPTY] },
        ]);
        let mut last = 0;
        assert_eq!(
            select(&mut d, &mut last, table(&[])),
            Err(SelectError::BadEdge { node: Some(0), target: 0 })
        );
    }

    struct RawNodes(Vec<Node>);
    impl DagNodes for RawNodes {
        fn node_count(&self) -> usize {
            self.0.len()
        }
        fn node_xid(&self, i: usize) -> Xid {
            self.0[i].xid
        }
        fn node_edges(&self, i: usize) -> [u8; MAX_EDGES] {
            self.0[i].edges
        }
        fn mark_visited(&mut self, i: usize, slot: usize) {
            self.0[i].edges[slot] |= EDGE_VISITED;
        }
    }

    #[test]
    fn last_at_the_intent_delivers() {
        let (ad, hid) = (x(Principal::Ad, 1), x(Principal::Hid, 2));
        let mut d = Dag::host(ad, hid).unwrap();
        let mut last = 1;
        assert_eq!(select(&mut d, &mut last, table(&[])).unwrap(), Selection::Deliver);
    }
}
