//! The XIP header.
//!
//! ```text
//!  0       1       2       3       4       5       6       7
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |version| next  | payload length| hop   | n dst | n src | last  |
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! | n dst destination nodes, then n src source nodes, 28 bytes each: |
//! |   XID type (u32) | XID (20 bytes) | 4 edge bytes                  |
//! +------------------------------------------------------------------+
//! ```
//! All fields big-endian. Payload length counts the bytes after the header. `last` is the index
//! of the last destination node already satisfied, 0x7E at the entry.

use crate::dag::{Dag, Node, EDGE_EMPTY, EDGE_VISITED, MAX_EDGES, MAX_NODES};
use crate::select::DagNodes;
use crate::xid::Xid;

use super::{be16, need, put16, read_xid, room, write_xid, Result, WireError, XID_WIRE_LEN};

/// The only XIP version.
pub const VERSION: u8 = 1;
/// Bytes before the first node.
pub const FIXED_HEADER_LEN: usize = 8;
/// Bytes per DAG node.
pub const NODE_LEN: usize = 28;
/// `last node` value meaning "nothing satisfied yet; start at the entry node" (xia-v2 and
/// Wireshark; v1 used 0xFF).
pub const LAST_NODE_ENTRY: u8 = 0x7E;
/// The prototype's default hop limit.
pub const DEFAULT_HOP_LIMIT: u8 = 250;
/// Longest possible header: both DAGs at [`MAX_NODES`].
pub const MAX_HEADER_LEN: usize = FIXED_HEADER_LEN + 2 * MAX_NODES * NODE_LEN;

/// What follows the XIP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHeader {
    /// Raw data (0), the only value Wireshark dissects further.
    Data,
    /// XCMP (1).
    Xcmp,
    /// DGRAM (2).
    Dgram,
    /// STREAM (3).
    Stream,
    /// FID flooding header (4).
    Fid,
    /// CHUNK requests and responses (0x0C).
    Chunk,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for NextHeader {
    fn from(v: u8) -> Self {
        match v {
            0 => NextHeader::Data,
            1 => NextHeader::Xcmp,
            2 => NextHeader::Dgram,
            3 => NextHeader::Stream,
            4 => NextHeader::Fid,
            0x0C => NextHeader::Chunk,
            other => NextHeader::Unknown(other),
        }
    }
}

impl From<NextHeader> for u8 {
    fn from(v: NextHeader) -> Self {
        match v {
            NextHeader::Data => 0,
            NextHeader::Xcmp => 1,
            NextHeader::Dgram => 2,
            NextHeader::Stream => 3,
            NextHeader::Fid => 4,
            NextHeader::Chunk => 0x0C,
            NextHeader::Unknown(other) => other,
        }
    }
}

mod field {
    pub const VERSION: usize = 0;
    pub const NEXT: usize = 1;
    pub const PAYLOAD_LEN: usize = 2;
    pub const HOP_LIMIT: usize = 4;
    pub const NUM_DST: usize = 5;
    pub const NUM_SRC: usize = 6;
    pub const LAST: usize = 7;
}

/// Reads a node at `at` (the caller checked the bounds).
#[inline]
pub(crate) fn read_node(b: &[u8], at: usize) -> Node {
    let mut edges = [0u8; MAX_EDGES];
    edges.copy_from_slice(&b[at + XID_WIRE_LEN..at + NODE_LEN]);
    Node { xid: read_xid(b, at), edges }
}

/// Writes a node at `at`.
#[inline]
pub(crate) fn write_node(b: &mut [u8], at: usize, n: &Node) {
    write_xid(b, at, &n.xid);
    b[at + XID_WIRE_LEN..at + NODE_LEN].copy_from_slice(&n.edges);
}

/// A view of an XIP packet (header and payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the header and the payload it announces are exactly the buffer, and that the
    /// node counts are possible. After this no accessor panics. (It does not check the DAGs'
    /// edges: [`XipRepr::parse`] does, and [`crate::select::select`] checks what it follows.)
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, FIXED_HEADER_LEN)?;
        let (nd, ns) = (usize::from(b[field::NUM_DST]), usize::from(b[field::NUM_SRC]));
        if nd > MAX_NODES {
            return Err(WireError::Dag(crate::dag::DagError::TooManyNodes(nd)));
        }
        if ns > MAX_NODES {
            return Err(WireError::Dag(crate::dag::DagError::TooManyNodes(ns)));
        }
        let hlen = FIXED_HEADER_LEN + NODE_LEN * (nd + ns);
        need(b, hlen)?;
        let declared = usize::from(be16(b, field::PAYLOAD_LEN));
        if declared != b.len() - hlen {
            return Err(WireError::Length { declared, present: b.len() - hlen });
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Next header.
    pub fn next_header(&self) -> NextHeader {
        self.buffer.as_ref()[field::NEXT].into()
    }

    /// Payload length field.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Number of destination nodes.
    pub fn num_dst(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::NUM_DST])
    }

    /// Number of source nodes.
    pub fn num_src(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::NUM_SRC])
    }

    /// Last node field.
    pub fn last_node(&self) -> u8 {
        self.buffer.as_ref()[field::LAST]
    }

    /// Header length implied by the node counts.
    pub fn header_len(&self) -> usize {
        FIXED_HEADER_LEN + NODE_LEN * (self.num_dst() + self.num_src())
    }

    /// Destination node `i` (`i < num_dst()`).
    pub fn dst_node(&self, i: usize) -> Node {
        read_node(self.buffer.as_ref(), FIXED_HEADER_LEN + NODE_LEN * i)
    }

    /// Source node `i` (`i < num_src()`).
    pub fn src_node(&self, i: usize) -> Node {
        read_node(self.buffer.as_ref(), FIXED_HEADER_LEN + NODE_LEN * (self.num_dst() + i))
    }

    /// Checks everything [`XipRepr::parse`] checks (version, last node, both DAGs' edges)
    /// without copying the DAGs out: for receive paths that only need the intents.
    pub fn validate(&self) -> Result<()> {
        self.check_len()?;
        if self.version() != VERSION {
            return Err(WireError::Version(self.version()));
        }
        let last = self.last_node();
        if last != LAST_NODE_ENTRY && usize::from(last) >= self.num_dst() {
            return Err(WireError::LastNode(last));
        }
        let b = self.buffer.as_ref();
        let edges = |at: usize| [b[at + 24], b[at + 25], b[at + 26], b[at + 27]];
        let nd = self.num_dst();
        crate::dag::validate_edges(nd, |i| edges(FIXED_HEADER_LEN + NODE_LEN * i))?;
        crate::dag::validate_edges(self.num_src(), |i| edges(FIXED_HEADER_LEN + NODE_LEN * (nd + i)))?;
        Ok(())
    }

    /// XID of the destination intent (the last destination node); `None` with no nodes.
    pub fn dst_intent(&self) -> Option<Xid> {
        self.num_dst().checked_sub(1).map(|i| self.dst_node(i).xid)
    }

    /// XID of the source intent; `None` with no nodes.
    pub fn src_intent(&self) -> Option<Xid> {
        self.num_src().checked_sub(1).map(|i| self.src_node(i).xid)
    }

    /// The destination DAG, validated.
    pub fn dst_dag(&self) -> Result<Dag> {
        Ok(Dag::from_node_fn(self.num_dst(), |i| self.dst_node(i))?)
    }

    /// The source DAG, validated.
    pub fn src_dag(&self) -> Result<Dag> {
        Ok(Dag::from_node_fn(self.num_src(), |i| self.src_node(i))?)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, v: NextHeader) {
        self.buffer.as_mut()[field::NEXT] = v.into()
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, v)
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v
    }

    /// Sets the last node.
    pub fn set_last_node(&mut self, v: u8) {
        self.buffer.as_mut()[field::LAST] = v
    }

    /// The destination nodes, in place, for [`crate::select::select`], together with the `last`
    /// field it updates: `(nodes, last)`.
    pub fn dst_nodes_mut(&mut self) -> (NodesView<&mut [u8]>, &mut u8) {
        let nd = self.num_dst();
        let b = self.buffer.as_mut();
        let (head, rest) = b.split_at_mut(FIXED_HEADER_LEN);
        (NodesView { bytes: &mut rest[..NODE_LEN * nd] }, &mut head[field::LAST])
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// Nodes of a DAG in wire layout, over packet bytes (a multiple of [`NODE_LEN`]).
#[derive(Debug)]
pub struct NodesView<T> {
    bytes: T,
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DagNodes for NodesView<T> {
    #[inline]
    fn node_count(&self) -> usize {
        self.bytes.as_ref().len() / NODE_LEN
    }
    #[inline]
    fn node_xid(&self, i: usize) -> Xid {
        read_node(self.bytes.as_ref(), NODE_LEN * i).xid
    }
    #[inline]
    fn node_edges(&self, i: usize) -> [u8; MAX_EDGES] {
        let at = NODE_LEN * i + 24;
        let b = self.bytes.as_ref();
        [b[at], b[at + 1], b[at + 2], b[at + 3]]
    }
    #[inline]
    fn mark_visited(&mut self, i: usize, slot: usize) {
        let e = &mut self.bytes.as_mut()[NODE_LEN * i + 24 + slot];
        if *e != EDGE_EMPTY {
            *e |= EDGE_VISITED;
        }
    }
}

/// The parsed meaning of an XIP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XipRepr {
    /// What follows.
    pub next_header: NextHeader,
    /// Hops left.
    pub hop_limit: u8,
    /// Index of the last satisfied destination node, [`LAST_NODE_ENTRY`] at the source.
    pub last_node: u8,
    /// Where the packet goes.
    pub dst: Dag,
    /// Where it comes from (the address replies go to).
    pub src: Dag,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl XipRepr {
    /// A new packet's header: hop limit [`DEFAULT_HOP_LIMIT`], last node at the entry.
    pub fn new(next_header: NextHeader, dst: Dag, src: Dag, payload_len: usize) -> XipRepr {
        XipRepr {
            next_header,
            hop_limit: DEFAULT_HOP_LIMIT,
            last_node: LAST_NODE_ENTRY,
            dst,
            src,
            payload_len,
        }
    }

    /// Reads and validates a header: version, lengths, both DAGs and the last node.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<XipRepr> {
        p.check_len()?;
        if p.version() != VERSION {
            return Err(WireError::Version(p.version()));
        }
        let last = p.last_node();
        if last != LAST_NODE_ENTRY && usize::from(last) >= p.num_dst() {
            return Err(WireError::LastNode(last));
        }
        Ok(XipRepr {
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            last_node: last,
            dst: p.dst_dag()?,
            src: p.src_dag()?,
            payload_len: p.payload().len(),
        })
    }

    /// Header length.
    pub fn header_len(&self) -> usize {
        FIXED_HEADER_LEN + NODE_LEN * (self.dst.len() + self.src.len())
    }

    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header into the first bytes of `buf` (which must hold `buffer_len()` bytes for
    /// the result to pass `check_len`); the payload is the caller's.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        room(buf, self.header_len())?;
        if self.last_node != LAST_NODE_ENTRY && usize::from(self.last_node) >= self.dst.len() {
            return Err(WireError::LastNode(self.last_node));
        }
        let plen = u16::try_from(self.payload_len).map_err(|_| WireError::Field("payload length"))?;
        buf[field::VERSION] = VERSION;
        buf[field::NEXT] = self.next_header.into();
        put16(buf, field::PAYLOAD_LEN, plen);
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::NUM_DST] = self.dst.len() as u8;
        buf[field::NUM_SRC] = self.src.len() as u8;
        buf[field::LAST] = self.last_node;
        let mut at = FIXED_HEADER_LEN;
        for n in self.dst.nodes().iter().chain(self.src.nodes()) {
            write_node(buf, at, n);
            at += NODE_LEN;
        }
        Ok(())
    }

    /// Emits header and `payload` into a new vector (convenient off the fast path).
    pub fn to_bytes(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut r = self.clone();
        r.payload_len = payload.len();
        let mut v = vec![0u8; r.buffer_len()];
        r.emit(&mut v)?;
        v[r.header_len()..].copy_from_slice(payload);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::DagError;
    use crate::select::{select, Lookup, Selection};
    use crate::xid::Principal;

    fn xid(p: Principal, b: u8) -> Xid {
        Xid::new(p, [b; 20])
    }

    /// `RE AD HID SID` to `RE AD HID`, next header DGRAM, 4 payload bytes, written out by hand
    /// from the format description.
    fn vector() -> Vec<u8> {
        let mut v = vec![
            1, 2, 0, 4, // version, next = DGRAM, payload length 4
            250, 3, 2, 0x7e, // hop limit, 3 dst, 2 src, last = entry
        ];
        let node = |v: &mut Vec<u8>, ty: u32, b: u8, edges: [u8; 4]| {
            v.extend_from_slice(&ty.to_be_bytes());
            v.extend_from_slice(&[b; 20]);
            v.extend_from_slice(&edges);
        };
        node(&mut v, 0x10, 0xa1, [1, 0x7f, 0x7f, 0x7f]);
        node(&mut v, 0x11, 0xb1, [2, 0x7f, 0x7f, 0x7f]);
        node(&mut v, 0x13, 0xc1, [0, 0x7f, 0x7f, 0x7f]);
        node(&mut v, 0x10, 0xa2, [1, 0x7f, 0x7f, 0x7f]);
        node(&mut v, 0x11, 0xb2, [0, 0x7f, 0x7f, 0x7f]);
        v.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        v
    }

    fn repr() -> XipRepr {
        XipRepr::new(
            NextHeader::Dgram,
            Dag::service(xid(Principal::Ad, 0xa1), xid(Principal::Hid, 0xb1), xid(Principal::Sid, 0xc1))
                .unwrap(),
            Dag::host(xid(Principal::Ad, 0xa2), xid(Principal::Hid, 0xb2)).unwrap(),
            4,
        )
    }

    #[test]
    fn test_deconstruct() {
        let v = vector();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.next_header(), NextHeader::Dgram);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.hop_limit(), 250);
        assert_eq!((p.num_dst(), p.num_src()), (3, 2));
        assert_eq!(p.last_node(), 0x7e);
        assert_eq!(p.header_len(), 8 + 5 * 28);
        assert_eq!(p.dst_intent(), Some(xid(Principal::Sid, 0xc1)));
        assert_eq!(p.src_intent(), Some(xid(Principal::Hid, 0xb2)));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn test_parse_and_emit() {
        let v = vector();
        let r = XipRepr::parse(&Packet::new_checked(&v[..]).unwrap()).unwrap();
        assert_eq!(r, repr());
        assert_eq!(repr().to_bytes(&[0xde, 0xad, 0xbe, 0xef]).unwrap(), v);
    }

    #[test]
    fn test_impossible_len() {
        let v = vector();
        assert_eq!(Packet::new_checked(&v[..7]).unwrap_err(), WireError::Truncated { need: 8, have: 7 });
        assert_eq!(
            Packet::new_checked(&v[..100]).unwrap_err(),
            WireError::Truncated { need: 148, have: 100 }
        );
        // Payload length lying either way.
        assert_eq!(
            Packet::new_checked(&v[..v.len() - 1]).unwrap_err(),
            WireError::Length { declared: 4, present: 3 }
        );
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(
            Packet::new_checked(&longer[..]).unwrap_err(),
            WireError::Length { declared: 4, present: 5 }
        );
        let mut many = v.clone();
        many[5] = 21;
        assert_eq!(Packet::new_checked(&many[..]).unwrap_err(), WireError::Dag(DagError::TooManyNodes(21)));
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let mut v = vector();
        v[0] = 2;
        assert_eq!(XipRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(), WireError::Version(2));
        let mut v = vector();
        v[7] = 3;
        assert_eq!(XipRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(), WireError::LastNode(3));
        // A destination edge pointing backwards (node 1 -> node 0).
        let mut v = vector();
        v[8 + 28 + 24] = 0;
        assert!(matches!(
            XipRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::Dag(DagError::EdgeBackward { node: 1, target: 0 })
        ));
        // A source edge out of range.
        let mut v = vector();
        v[8 + 3 * 28 + 24] = 9;
        assert!(matches!(
            XipRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::Dag(DagError::EdgeOutOfRange { .. })
        ));
        // No nodes at all.
        let mut v = vector();
        v[5] = 0;
        v[6] = 0;
        v.truncate(8);
        v[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(
            XipRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::Dag(DagError::Empty)
        );
    }

    #[test]
    fn select_in_place_on_the_packet() {
        let mut v = vector();
        let ad = xid(Principal::Ad, 0xa1);
        let hid = xid(Principal::Hid, 0xb1);
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        let (mut nodes, last) = p.dst_nodes_mut();
        let r = select(&mut nodes, last, |x| {
            if *x == ad {
                Lookup::Local
            } else if *x == hid {
                Lookup::NextHop(5u8)
            } else {
                Lookup::Miss
            }
        })
        .unwrap();
        assert_eq!(r, Selection::Forward { hop: 5, target: 1 });
        assert_eq!(p.last_node(), 0);
        // The entry edge (stored in the intent) got the visited bit.
        assert_eq!(p.dst_node(2).edges[0], 0x80);
        // The header stays valid.
        XipRepr::parse(&p).unwrap();
    }
}
