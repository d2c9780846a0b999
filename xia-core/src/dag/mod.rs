//! DAG addresses with fallback.
//!
//! An XIA address is a directed acyclic graph of XIDs. A virtual *entry* (source) node points
//! into the graph; the *intent* is the single sink, the thing the packet is for. Each node has up
//! to four out-edges tried in order: edge 0 is the primary path, edges 1..3 are fallbacks used
//! when a router cannot make progress on the earlier ones.
//!
//! Wire layout (shared with the prototype and Wireshark): nodes in topological order, intent
//! last; the entry node is not stored, its out-edges live in the edge slots of the intent (which
//! has no out-edges of its own). [`Dag`] keeps exactly that layout, so encoding is a copy.
//!
//! Text forms of the prototype:
//! - `RE AD:.. HID:.. SID:..`, a path from the entry, with optional fallback groups
//!   `RE ( IP:1.2.3.4 ) AD:.. HID:..` placed before the node they lead to;
//! - `DAG 2 0 - AD:.. 2 1 - HID:.. 2 - CID:..`, the entry's edge list, then each node followed by
//!   its edge list, `-` separated (any DAG can be written this way; nodes may be listed in any
//!   order, they are put in topological order).
//!
//! Text forms are addresses: they do not carry the visited bits a forwarded packet has.
//!
//! Differences from Wireshark's dissector worth knowing: it accepts at most 9 nodes per DAG
//! (tshark flags bigger ones with `xip.bad_num_dst`; the prototype and this crate allow 20), and
//! it takes XID type 0 as padding that ends a DAG. Unknown principal types print here as
//! `0x<code>:<hex>`, which the prototype's parser does not read.
//!
//! The two text forms are read and written in `text` (`FromStr`, `Display`,
//! [`Dag::to_dag_string`], [`Dag::to_re_string`]).

mod text;

use std::fmt;

use crate::xid::{Xid, XidError};

/// Most nodes a DAG may have (the prototype's `CLICK_XIA_ADDR_MAX_NODES`).
pub const MAX_NODES: usize = 20;
/// Out-edges per node.
pub const MAX_EDGES: usize = 4;
/// Edge byte of an unused slot.
pub const EDGE_EMPTY: u8 = 0x7F;
/// Bit a router sets on the edge it took to a node that was local to it.
pub const EDGE_VISITED: u8 = 0x80;
/// Mask of the node index in an edge byte.
pub const EDGE_INDEX: u8 = 0x7F;

/// Why a DAG is not a valid XIA address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// No nodes at all.
    #[error("DAG has no nodes")]
    Empty,
    /// More than [`MAX_NODES`] nodes.
    #[error("DAG has {0} nodes, at most {MAX_NODES} allowed")]
    TooManyNodes(usize),
    /// More than [`MAX_EDGES`] out-edges on one node (`None`: the entry node).
    #[error("node {0:?} (None: the entry) has more than {MAX_EDGES} out-edges")]
    TooManyEdges(Option<usize>),
    /// An edge names a node that does not exist.
    #[error("edge of node {node:?} (None: the entry) points to node {target}, beyond the last node")]
    EdgeOutOfRange {
        /// Index of the node holding the edge (`None`: the entry node).
        node: Option<usize>,
        /// Index the edge points to.
        target: usize,
    },
    /// An edge points to itself or to an earlier node: nodes are not in topological order.
    #[error("edge of node {node} points back to node {target}")]
    EdgeBackward {
        /// Index of the node holding the edge.
        node: usize,
        /// Index the edge points to.
        target: usize,
    },
    /// A used edge slot follows an unused one (`None`: the entry node's slots).
    #[error("node {0:?} (None: the entry) has an edge after an empty edge slot")]
    EdgeAfterEmpty(Option<usize>),
    /// The entry node has no out-edge.
    #[error("the entry node has no out-edge")]
    NoEntryEdge,
    /// A node other than the intent has no out-edge.
    #[error("node {0} is not the intent but has no out-edge")]
    DeadEnd(usize),
    /// A node cannot be reached from the entry node.
    #[error("node {0} cannot be reached from the entry node")]
    Unreachable(usize),
    /// The graph has a cycle (builder only).
    #[error("the graph has a cycle")]
    Cycle,
    /// The graph has no sink or more than one (builder only).
    #[error("the graph must have exactly one intent (sink), found {0}")]
    Sinks(usize),
    /// Paths given to [`Dag::from_paths`] do not end at the same intent, or one is empty.
    #[error("paths must be non-empty and end at the same intent")]
    PathIntent,
    /// The text is not a DAG string.
    #[error("DAG text: {0}")]
    Syntax(String),
    /// An XID in the text is malformed.
    #[error("DAG text: {0}")]
    Xid(#[from] XidError),
}

/// One node: an XID and its four edge bytes as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    /// The node's XID.
    pub xid: Xid,
    /// Edge bytes: index in bits 0..6, [`EDGE_VISITED`] in bit 7, [`EDGE_EMPTY`] when unused.
    pub edges: [u8; MAX_EDGES],
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:02x?}", self.xid, self.edges)
    }
}

/// Indices of the used edges in an edge array, in priority order. Only [`EDGE_EMPTY`] itself
/// marks an unused slot (as in Wireshark and the prototype); 0xFF is a broken edge, which
/// validation rejects as out of range.
pub fn edge_targets(edges: &[u8; MAX_EDGES]) -> impl Iterator<Item = usize> + '_ {
    edges.iter().take_while(|&&e| e != EDGE_EMPTY).map(|&e| usize::from(e & EDGE_INDEX))
}

/// Edge bytes for `targets` (at most [`MAX_EDGES`], each below 128), unused slots empty.
fn encode_edges(targets: impl IntoIterator<Item = usize>) -> [u8; MAX_EDGES] {
    let mut e = [EDGE_EMPTY; MAX_EDGES];
    for (slot, t) in e.iter_mut().zip(targets) {
        *slot = t as u8;
    }
    e
}

/// Checks the edge bytes of the nodes of a DAG of `n` nodes, as read from a packet.
///
/// `edges(i)` gives node `i`'s edge bytes. Used by [`Dag::from_nodes`] and by wire views, so that
/// a DAG is checked the same way whether it was built or received.
pub fn validate_edges(n: usize, edges: impl Fn(usize) -> [u8; MAX_EDGES]) -> Result<(), DagError> {
    if n == 0 {
        return Err(DagError::Empty);
    }
    if n > MAX_NODES {
        return Err(DagError::TooManyNodes(n));
    }
    let sink = n - 1;
    for i in 0..n {
        let e = edges(i);
        let holder = (i != sink).then_some(i);
        let mut used = 0;
        let mut seen_empty = false;
        for &b in &e {
            if b == EDGE_EMPTY {
                seen_empty = true;
                continue;
            }
            if seen_empty {
                return Err(DagError::EdgeAfterEmpty(holder));
            }
            let t = usize::from(b & EDGE_INDEX);
            if t >= n {
                return Err(DagError::EdgeOutOfRange { node: holder, target: t });
            }
            if i != sink && t <= i {
                return Err(DagError::EdgeBackward { node: i, target: t });
            }
            used += 1;
        }
        if used == 0 {
            return Err(if i == sink { DagError::NoEntryEdge } else { DagError::DeadEnd(i) });
        }
    }
    // Reachability from the entry: edges point forward, so one pass in index order settles it.
    let mut live: u32 = 0;
    for t in edge_targets(&edges(sink)) {
        live |= 1 << t;
    }
    for i in 0..sink {
        if live & (1 << i) == 0 {
            return Err(DagError::Unreachable(i));
        }
        for t in edge_targets(&edges(i)) {
            live |= 1 << t;
        }
    }
    if live & (1 << sink) == 0 {
        return Err(DagError::Unreachable(sink));
    }
    Ok(())
}

/// A validated DAG address, stored in wire order (no heap allocation).
#[derive(Clone)]
pub struct Dag {
    len: u8,
    nodes: [Node; MAX_NODES],
}

const EMPTY_NODE: Node =
    Node { xid: Xid::new(crate::xid::Principal::Unknown(0), [0; 20]), edges: [EDGE_EMPTY; MAX_EDGES] };

impl PartialEq for Dag {
    fn eq(&self, other: &Self) -> bool {
        self.nodes() == other.nodes()
    }
}
impl Eq for Dag {}

impl std::hash::Hash for Dag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nodes().hash(state)
    }
}

impl fmt::Debug for Dag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dag({self})")
    }
}

impl Dag {
    /// A DAG from nodes in wire layout (entry edges in the intent's slots), validated.
    pub fn from_nodes(nodes: &[Node]) -> Result<Dag, DagError> {
        Dag::from_node_fn(nodes.len(), |i| nodes[i])
    }

    /// A DAG of `n` nodes, node `i` given by `node(i)` (e.g. read off a packet), validated.
    pub fn from_node_fn(n: usize, node: impl Fn(usize) -> Node) -> Result<Dag, DagError> {
        if n > MAX_NODES {
            return Err(DagError::TooManyNodes(n));
        }
        let mut d = Dag { len: n as u8, nodes: [EMPTY_NODE; MAX_NODES] };
        for (i, slot) in d.nodes[..n].iter_mut().enumerate() {
            *slot = node(i);
        }
        validate_edges(n, |i| d.nodes[i].edges)?;
        Ok(d)
    }

    /// A linear path from the entry: `RE a b c`.
    pub fn linear(path: &[Xid]) -> Result<Dag, DagError> {
        Dag::from_paths(&[path])
    }

    /// A DAG that merges several paths from the entry to one intent.
    ///
    /// The first path is the primary (edge 0 wherever it goes); each later path adds fallback
    /// edges, in the order given, wherever it leaves the earlier ones. Nodes are identified by
    /// XID. This is the prototype's `Graph + Graph`.
    pub fn from_paths(paths: &[&[Xid]]) -> Result<Dag, DagError> {
        let intent = paths.first().and_then(|p| p.last()).ok_or(DagError::PathIntent)?;
        let mut b = DagBuilder::default();
        for path in paths {
            if path.last() != Some(intent) {
                return Err(DagError::PathIntent);
            }
            let mut from = None;
            for x in path.iter() {
                let to = b.node(*x)?;
                b.edge(from, to)?;
                from = Some(to);
            }
        }
        b.build()
    }

    /// `RE AD HID`: a host. (Fails only if the two XIDs are equal.)
    pub fn host(ad: Xid, hid: Xid) -> Result<Dag, DagError> {
        Dag::linear(&[ad, hid])
    }

    /// `RE AD HID SID`: a service on a host. (Fails only if two XIDs are equal.)
    pub fn service(ad: Xid, hid: Xid, sid: Xid) -> Result<Dag, DagError> {
        Dag::linear(&[ad, hid, sid])
    }

    /// A content DAG: intent `cid`, tried first at every step, with the publisher's AD and HID as
    /// the fallback path (`DAG 2 0 - AD 2 1 - HID 2 - CID`). Any router or host on the way that
    /// knows the CID (a cache) can serve it; the others route towards the publisher. (Fails only
    /// if two XIDs are equal.)
    pub fn content(cid: Xid, ad: Xid, hid: Xid) -> Result<Dag, DagError> {
        Dag::from_paths(&[&[cid], &[ad, cid], &[ad, hid, cid]])
    }

    /// `path` with `fallback` as the alternative to its first hop: `RE ( fallback.. ) path..`,
    /// e.g. `RE ( IP:1.2.3.4 ) AD HID` to cross an IPv4 island when the AD is unknown.
    pub fn with_fallback(fallback: &[Xid], path: &[Xid]) -> Result<Dag, DagError> {
        let mut alt = fallback.to_vec();
        alt.extend_from_slice(path);
        Dag::from_paths(&[path, &alt])
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a valid DAG has at least one node (here for `len`'s sake).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The nodes in wire order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes[..self.len()]
    }

    /// The intent (sink) XID.
    pub fn intent(&self) -> &Xid {
        &self.nodes[self.len() - 1].xid
    }

    /// Index of the intent node.
    pub fn intent_index(&self) -> usize {
        self.len() - 1
    }

    /// Out-edge targets of the entry node, in priority order.
    pub fn entry_edges(&self) -> impl Iterator<Item = usize> + '_ {
        edge_targets(&self.nodes[self.len() - 1].edges)
    }

    /// Out-edge targets of node `i` (none for the intent), in priority order.
    pub fn out_edges(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let edges = if i < self.intent_index() { &self.nodes[i].edges } else { &[EDGE_EMPTY; MAX_EDGES] };
        edge_targets(edges)
    }

    /// Index of the first node whose XID is `xid`.
    pub fn position(&self, xid: &Xid) -> Option<usize> {
        self.nodes().iter().position(|n| n.xid == *xid)
    }

    /// Sets the visited bit of edge `slot` of node `i` (what a node does when it satisfies the
    /// edge's target locally); unused slots and out-of-range indices are left alone.
    pub fn mark_visited(&mut self, i: usize, slot: usize) {
        if i < self.len() && slot < MAX_EDGES && self.nodes[i].edges[slot] != EDGE_EMPTY {
            self.nodes[i].edges[slot] |= EDGE_VISITED;
        }
    }

    /// Clears every visited bit (a DAG read from a forwarded packet, reused as an address).
    pub fn clear_visited(&mut self) {
        let n = self.len();
        for node in &mut self.nodes[..n] {
            for e in &mut node.edges {
                if *e != EDGE_EMPTY {
                    *e &= EDGE_INDEX;
                }
            }
        }
    }

    /// The same DAG with every node named `old` renamed `new` (e.g. a VM's AD after it moved).
    pub fn replace_xid(&self, old: &Xid, new: Xid) -> Dag {
        let mut d = self.clone();
        let n = d.len();
        for node in &mut d.nodes[..n] {
            if node.xid == *old {
                node.xid = new;
            }
        }
        d
    }
}

// In derived encodings (the local IPC protocol) a DAG is its nodes in wire order, each its XID
// and edge bytes; what is read is bounded and validated like a DAG off the wire.
impl serde::Serialize for Dag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for n in self.nodes() {
            seq.serialize_element(&(n.xid, n.edges))?;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for Dag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dag, D::Error> {
        struct Nodes;
        impl<'de> serde::de::Visitor<'de> for Nodes {
            type Value = Dag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_NODES} DAG nodes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Dag, A::Error> {
                use serde::de::Error;
                let mut d = Dag { len: 0, nodes: [EMPTY_NODE; MAX_NODES] };
                while let Some((xid, edges)) = seq.next_element::<(Xid, [u8; MAX_EDGES])>()? {
                    let slot = d
                        .nodes
                        .get_mut(usize::from(d.len))
                        .ok_or_else(|| A::Error::custom(DagError::TooManyNodes(MAX_NODES + 1)))?;
                    *slot = Node { xid, edges };
                    d.len += 1;
                }
                Dag::from_nodes(d.nodes()).map_err(A::Error::custom)
            }
        }
        d.deserialize_seq(Nodes)
    }
}

/// Builds a DAG from nodes and prioritized edges in any order; [`DagBuilder::build`] puts the
/// nodes in topological order (ties kept in insertion order) with the intent last.
#[derive(Debug, Default, Clone)]
pub struct DagBuilder {
    xids: Vec<Xid>,
    /// Out-edges per node, in priority order.
    out: Vec<Vec<usize>>,
    entry: Vec<usize>,
}

impl DagBuilder {
    /// Adds a node (or returns the index of the node with that XID).
    pub fn node(&mut self, xid: Xid) -> Result<usize, DagError> {
        match self.xids.iter().position(|x| *x == xid) {
            Some(i) => Ok(i),
            None => self.push_node(xid),
        }
    }

    /// Adds a node even if another has the same XID.
    pub fn push_node(&mut self, xid: Xid) -> Result<usize, DagError> {
        if self.xids.len() == MAX_NODES {
            return Err(DagError::TooManyNodes(MAX_NODES + 1));
        }
        self.xids.push(xid);
        self.out.push(Vec::new());
        Ok(self.xids.len() - 1)
    }

    /// Adds an edge from `from` (`None`: the entry node) to `to`, after the existing ones;
    /// an edge already present keeps its priority.
    pub fn edge(&mut self, from: Option<usize>, to: usize) -> Result<(), DagError> {
        let n = self.xids.len();
        if to >= n || from.is_some_and(|f| f >= n) {
            return Err(DagError::EdgeOutOfRange { node: from, target: to });
        }
        let list = match from {
            None => &mut self.entry,
            Some(f) => &mut self.out[f],
        };
        if !list.contains(&to) {
            if list.len() == MAX_EDGES {
                return Err(DagError::TooManyEdges(from));
            }
            list.push(to);
        }
        Ok(())
    }

    /// Orders, checks and encodes the DAG.
    pub fn build(&self) -> Result<Dag, DagError> {
        let n = self.xids.len();
        if n == 0 {
            return Err(DagError::Empty);
        }
        if self.entry.is_empty() {
            return Err(DagError::NoEntryEdge);
        }
        let sinks = self.out.iter().filter(|o| o.is_empty()).count();
        if sinks != 1 {
            return Err(DagError::Sinks(sinks));
        }
        // Kahn's algorithm, smallest insertion index first.
        let mut indeg = vec![0usize; n];
        for o in &self.out {
            for &t in o {
                indeg[t] += 1;
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut placed = vec![false; n];
        while order.len() < n {
            let next = (0..n).find(|&i| !placed[i] && indeg[i] == 0).ok_or(DagError::Cycle)?;
            placed[next] = true;
            order.push(next);
            for &t in &self.out[next] {
                indeg[t] -= 1;
            }
        }
        // With one sink and no cycle every node leads to the sink, so it comes out last.
        let mut pos = vec![0usize; n];
        for (p, &i) in order.iter().enumerate() {
            pos[i] = p;
        }
        let encode = |list: &[usize]| encode_edges(list.iter().map(|&t| pos[t]));
        let nodes: Vec<Node> = order
            .iter()
            .map(|&i| Node {
                xid: self.xids[i],
                edges: if self.out[i].is_empty() { encode(&self.entry) } else { encode(&self.out[i]) },
            })
            .collect();
        Dag::from_nodes(&nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xid::Principal;

    pub(super) fn x(p: Principal, b: u8) -> Xid {
        Xid::new(p, [b; 20])
    }
    pub(super) fn ad() -> Xid {
        x(Principal::Ad, 0xaa)
    }
    pub(super) fn hid() -> Xid {
        x(Principal::Hid, 0xbb)
    }
    pub(super) fn sid() -> Xid {
        x(Principal::Sid, 0xcc)
    }
    pub(super) fn cid() -> Xid {
        x(Principal::Cid, 0xdd)
    }

    #[test]
    fn linear_service_dag_layout() {
        let d = Dag::service(ad(), hid(), sid()).unwrap();
        let e = EDGE_EMPTY;
        assert_eq!(d.nodes()[0].edges, [1, e, e, e]);
        assert_eq!(d.nodes()[1].edges, [2, e, e, e]);
        // The intent holds the entry's edges.
        assert_eq!(d.nodes()[2].edges, [0, e, e, e]);
        assert_eq!(d.intent(), &sid());
        let re = format!("RE {} {} {}", ad(), hid(), sid());
        assert_eq!(d.to_string(), re);
        assert_eq!(re.parse::<Dag>().unwrap(), d);
    }

    #[test]
    fn fallback_dag_layout_and_text() {
        let ip: Xid = "IP:10.0.0.1".parse().unwrap();
        let d = Dag::with_fallback(&[ip], &[ad(), hid()]).unwrap();
        let e = EDGE_EMPTY;
        // Prototype order: the fallback node comes first in the text, so first on the wire.
        assert_eq!(d.nodes()[0].xid, ip);
        assert_eq!(d.nodes()[0].edges, [1, e, e, e]);
        assert_eq!(d.nodes()[1].edges, [2, e, e, e]);
        assert_eq!(d.nodes()[2].edges, [1, 0, e, e], "entry: AD first, IP fallback");
        let re = format!("RE ( {ip} ) {} {}", ad(), hid());
        assert_eq!(d.to_string(), re);
        assert_eq!(re.parse::<Dag>().unwrap(), d);
    }

    #[test]
    fn validation_rejects_bad_wire_dags() {
        let e = EDGE_EMPTY;
        let node = |xid, edges| Node { xid, edges };
        // Edge after an empty slot.
        assert_eq!(
            Dag::from_nodes(&[node(ad(), [1, e, e, e]), node(hid(), [e, 0, e, e])]),
            Err(DagError::EdgeAfterEmpty(None))
        );
        // Dead end.
        assert_eq!(
            Dag::from_nodes(&[node(ad(), [e; 4]), node(hid(), [0, 1, e, e])]),
            Err(DagError::DeadEnd(0))
        );
        // Backward edge.
        assert_eq!(
            Dag::from_nodes(&[node(ad(), [0, e, e, e]), node(hid(), [0, e, e, e])]),
            Err(DagError::EdgeBackward { node: 0, target: 0 })
        );
        // Node 0 not reachable: entry goes straight to the intent.
        assert_eq!(
            Dag::from_nodes(&[node(ad(), [1, e, e, e]), node(hid(), [1, e, e, e])]),
            Err(DagError::Unreachable(0))
        );
        // Out of range.
        assert_eq!(
            Dag::from_nodes(&[node(ad(), [2, e, e, e]), node(hid(), [0, e, e, e])]),
            Err(DagError::EdgeOutOfRange { node: Some(0), target: 2 })
        );
        assert_eq!(Dag::from_nodes(&[node(ad(), [e; 4])]), Err(DagError::NoEntryEdge));
        assert_eq!(Dag::from_nodes(&[]), Err(DagError::Empty));
        // Visited bits are legal in packets.
        let d = Dag::from_nodes(&[node(ad(), [0x81, e, e, e]), node(hid(), [0x80, e, e, e])]).unwrap();
        let mut c = d.clone();
        c.clear_visited();
        assert_eq!(c, Dag::host(ad(), hid()).unwrap());
    }

    #[test]
    fn builder_detects_cycles_and_sinks() {
        let mut b = DagBuilder::default();
        let a = b.node(ad()).unwrap();
        let h = b.node(hid()).unwrap();
        let s = b.node(sid()).unwrap();
        b.edge(None, a).unwrap();
        b.edge(Some(a), h).unwrap();
        b.edge(Some(h), a).unwrap();
        b.edge(Some(h), s).unwrap();
        assert_eq!(b.build(), Err(DagError::Cycle));
        let mut b = DagBuilder::default();
        let a = b.node(ad()).unwrap();
        b.node(hid()).unwrap();
        b.edge(None, a).unwrap();
        assert_eq!(b.build(), Err(DagError::Sinks(2)));
        assert!(Dag::from_paths(&[&[ad(), hid()], &[ad(), sid()]]).is_err());
    }

    #[test]
    fn replace_xid_moves_a_host_to_a_new_ad() {
        let d = Dag::service(ad(), hid(), sid()).unwrap();
        let ad2 = x(Principal::Ad, 0x22);
        let moved = d.replace_xid(&ad(), ad2);
        assert_eq!(moved, Dag::service(ad2, hid(), sid()).unwrap());
    }
}
