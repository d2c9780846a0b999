//! Property tests over random DAGs and headers: wire and text round trips, truncation, and the
//! shared next-hop selection behaving the same on a [`Dag`] and in place on packet bytes.

use proptest::prelude::*;

use xia_core::dag::{Dag, Node, EDGE_EMPTY, MAX_EDGES, MAX_NODES};
use xia_core::select::{select, DagNodes, Lookup, Selection};
use xia_core::wire::chunk::{ChunkRepr, NackReason};
use xia_core::wire::stream::{Flags, SackBlocks, StreamRepr};
use xia_core::wire::xcmp::{Unreachable, XcmpRepr};
use xia_core::wire::xip::LAST_NODE_ENTRY;
use xia_core::wire::xip::{NextHeader, Packet, XipRepr};
use xia_core::wire::{chunk, dgram, stream, xcmp, WireError};
use xia_core::xid::{Principal, Xid};

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        Just(Principal::Ad),
        Just(Principal::Hid),
        Just(Principal::Cid),
        Just(Principal::Sid),
        Just(Principal::Ip),
        Just(Principal::Fid),
        Just(Principal::Ncid),
        any::<u32>().prop_map(Principal::from_code),
    ]
}

fn xid() -> impl Strategy<Value = Xid> {
    (principal(), any::<[u8; 20]>()).prop_map(|(p, id)| Xid::new(p, id))
}

/// Random valid DAGs: a chain 0 -> 1 -> .. -> intent keeps every node reachable and leading to
/// the intent; random extra forward edges (fallbacks) are mixed in and each edge list is
/// shuffled, so the primary edge is not always the chain's.
fn dag() -> impl Strategy<Value = Dag> {
    (1..=MAX_NODES)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(xid(), n),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..MAX_EDGES), n),
                proptest::collection::vec(any::<u8>(), 0..MAX_EDGES),
                any::<u64>(),
            )
        })
        .prop_map(|(xids, extras, entry_extras, shuffle)| {
            let n = xids.len();
            let sink = n - 1;
            let mut rng = shuffle;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut nodes: Vec<Node> = Vec::with_capacity(n);
            for (i, x) in xids.iter().enumerate() {
                let mut list: Vec<u8> = Vec::new();
                if i < sink {
                    list.push((i + 1) as u8);
                    for e in &extras[i] {
                        let span = sink - i;
                        let t = (i + 1 + usize::from(*e) % span) as u8;
                        if !list.contains(&t) && list.len() < MAX_EDGES {
                            list.push(t);
                        }
                    }
                } else {
                    list.push(0);
                    for e in &entry_extras {
                        let t = (usize::from(*e) % n) as u8;
                        if !list.contains(&t) && list.len() < MAX_EDGES {
                            list.push(t);
                        }
                    }
                }
                for k in (1..list.len()).rev() {
                    list.swap(k, (next() % (k as u64 + 1)) as usize);
                }
                let mut edges = [EDGE_EMPTY; MAX_EDGES];
                edges[..list.len()].copy_from_slice(&list);
                nodes.push(Node { xid: *x, edges });
            }
            Dag::from_nodes(&nodes).expect("generated DAG is valid")
        })
}

fn lookup_result() -> impl Strategy<Value = Lookup<u16>> {
    prop_oneof![
        Just(Lookup::Local),
        any::<u16>().prop_map(Lookup::NextHop),
        Just(Lookup::Fallback),
        Just(Lookup::Miss),
    ]
}

fn xip_repr() -> impl Strategy<Value = (XipRepr, Vec<u8>)> {
    (dag(), dag(), any::<u8>(), any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(dst, src, next, hop, last, payload)| {
            let last_node = if last % 4 == 0 { LAST_NODE_ENTRY } else { last % dst.len() as u8 };
            let mut r = XipRepr::new(NextHeader::from(next), dst, src, payload.len());
            r.hop_limit = hop;
            r.last_node = last_node;
            (r, payload)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn xip_round_trips((repr, payload) in xip_repr()) {
        let bytes = repr.to_bytes(&payload).unwrap();
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        let p = Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(&XipRepr::parse(&p).unwrap(), &repr);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn every_prefix_of_a_packet_is_a_typed_error((repr, payload) in xip_repr(), cut in any::<prop::sample::Index>()) {
        let bytes = repr.to_bytes(&payload).unwrap();
        let at = cut.index(bytes.len());
        let err = XipRepr::parse(&Packet::new_unchecked(&bytes[..at])).unwrap_err();
        let typed = matches!(err, WireError::Truncated { .. } | WireError::Length { .. });
        prop_assert!(typed, "{:?}", err);
    }

    #[test]
    fn dag_text_round_trips(d in dag()) {
        prop_assert_eq!(&d.to_dag_string().parse::<Dag>().unwrap(), &d);
        prop_assert_eq!(&d.to_string().parse::<Dag>().unwrap(), &d);
        if let Some(re) = d.to_re_string() {
            prop_assert_eq!(&re.parse::<Dag>().unwrap(), &d);
        }
    }

    #[test]
    fn xid_text_round_trips(x in xid()) {
        prop_assert_eq!(x.to_string().parse::<Xid>().unwrap(), x);
    }

    /// Routers select in place on packet bytes, hosts on a `Dag`: same decision, same `last`,
    /// same visited bits; and the decision follows the prototype's rules.
    #[test]
    fn selection_is_consistent_and_follows_the_rules(
        (repr, payload) in xip_repr(),
        table in proptest::collection::vec(lookup_result(), MAX_NODES),
    ) {
        let lookup = |d: &Dag| {
            let d = d.clone();
            let table = &table;
            move |x: &Xid| table[d.position(x).unwrap()]
        };
        let mut dag = repr.dst.clone();
        let mut last = repr.last_node;
        let on_dag = select(&mut dag, &mut last, lookup(&repr.dst)).unwrap();

        let mut bytes = repr.to_bytes(&payload).unwrap();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        let (mut nodes, last_field) = p.dst_nodes_mut();
        let in_place = select(&mut nodes, last_field, lookup(&repr.dst)).unwrap();
        prop_assert_eq!(on_dag, in_place);
        prop_assert_eq!(p.last_node(), last);
        let after = XipRepr::parse(&p).unwrap();
        prop_assert_eq!(&after.dst, &dag);

        // `last` only moves forward.
        let start = if repr.last_node == LAST_NODE_ENTRY { None } else { Some(repr.last_node) };
        let now = if last == LAST_NODE_ENTRY { None } else { Some(last) };
        prop_assert!(now >= start);
        let sink = dag.len() - 1;
        let first = |x: &Xid| table[repr.dst.position(x).unwrap()];
        match on_dag {
            Selection::Deliver => prop_assert_eq!(usize::from(last), sink),
            Selection::Forward { hop, target } => {
                prop_assert_eq!(first(&dag.nodes()[target].xid), Lookup::NextHop(hop));
            }
            Selection::Unreachable { at } => {
                let holder = at.unwrap_or(sink);
                let targets: Vec<usize> = if holder == sink {
                    dag.entry_edges().collect()
                } else {
                    dag.out_edges(holder).collect()
                };
                for t in targets {
                    let l = first(&dag.nodes()[t].xid);
                    prop_assert!(matches!(l, Lookup::Fallback | Lookup::Miss));
                }
            }
        }
        prop_assert_eq!(DagNodes::node_count(&dag), repr.dst.len());
    }

    #[test]
    fn stream_round_trips(
        flags in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(), window in any::<u32>(),
        mss in any::<Option<u16>>(), ws in any::<Option<u8>>(), sp in any::<bool>(),
        ts in any::<Option<(u32, u32)>>(),
        sack in proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        migrate in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        migrate_ack in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let r = StreamRepr {
            flags: Flags(flags), seq, ack, window, mss, window_scale: ws, sack_permitted: sp,
            timestamps: ts, sack: SackBlocks::new(&sack).unwrap(),
            migrate: migrate.as_deref(), migrate_ack: migrate_ack.as_deref(), payload: &payload,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf).unwrap();
        prop_assert_eq!(StreamRepr::parse(&stream::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn chunk_and_xcmp_round_trip(
        id in any::<u32>(), off in 0u32..1 << 20, extra in 0u32..1 << 20,
        data in proptest::collection::vec(any::<u8>(), 0..300), code in any::<u8>(), kind in 0u8..8,
    ) {
        let chunk = match kind % 3 {
            0 => ChunkRepr::Request { request_id: id, offset: off, length: extra },
            1 => ChunkRepr::Response {
                request_id: id,
                offset: off,
                total_len: off + data.len() as u32 + extra,
                no_store: code & 1 != 0,
                data: &data,
            },
            _ => ChunkRepr::Nack { request_id: id, reason: NackReason::from(code) },
        };
        let mut buf = vec![0u8; chunk.buffer_len()];
        chunk.emit(&mut buf).unwrap();
        prop_assert_eq!(ChunkRepr::parse(&chunk::Packet::new_checked(&buf[..]).unwrap()).unwrap(), chunk);

        let x = match kind {
            0 => XcmpRepr::EchoRequest { ident: id as u16, seq: off as u16, data: &data },
            1 => XcmpRepr::EchoReply { ident: id as u16, seq: off as u16, data: &data },
            2 => XcmpRepr::DstUnreachable { reason: Unreachable::from(code), original: &data },
            3 => XcmpRepr::TimeExceeded { code, original: &data },
            4 => XcmpRepr::Redirect { code, original: &data },
            _ => {
                let mut body = vec![1u8, 2, 3, 4];
                body.extend_from_slice(&data);
                let mut buf = vec![0u8; 4 + body.len()];
                let t = 100 + kind;
                XcmpRepr::Other { msg_type: t, code, body: &body }.emit(&mut buf).unwrap();
                let parsed = XcmpRepr::parse(&xcmp::Packet::new_checked(&buf[..]).unwrap()).unwrap();
                prop_assert_eq!(parsed, XcmpRepr::Other { msg_type: t, code, body: &body });
                return Ok(());
            }
        };
        let mut buf = vec![0u8; x.buffer_len()];
        x.emit(&mut buf).unwrap();
        prop_assert_eq!(XcmpRepr::parse(&xcmp::Packet::new_checked(&buf[..]).unwrap()).unwrap(), x);
    }

    /// Random bytes: every parser answers with a value or a typed error, never a panic.
    #[test]
    fn parsers_survive_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = XipRepr::parse(&Packet::new_unchecked(&bytes[..]));
        let _ = XcmpRepr::parse(&xcmp::Packet::new_unchecked(&bytes[..]));
        let _ = dgram::DgramRepr::parse(&dgram::Packet::new_unchecked(&bytes[..]));
        let _ = StreamRepr::parse(&stream::Packet::new_unchecked(&bytes[..]));
        let _ = ChunkRepr::parse(&chunk::Packet::new_unchecked(&bytes[..]));
        let _ = xia_core::wire::control::open(&bytes);
        let _ = xia_core::wire::control::inspect(&bytes);
        let _ = String::from_utf8_lossy(&bytes).parse::<Dag>();
    }
}
