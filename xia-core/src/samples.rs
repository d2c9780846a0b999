//! Example frames of every kind this stack puts on the wire, built with deterministic keys:
//! for captures and demos, dissector checks (tshark), fuzz seeds and benchmarks.

use std::net::Ipv4Addr;

use crate::dag::Dag;
use crate::keys::Keypair;
use crate::select::{select, Lookup};
use crate::wire::chunk::{ChunkRepr, NackReason};
use crate::wire::control::{AdRoutes, Beacon, ControlBody, HostRegistered, RoutePatch, Stamp};
use crate::wire::dgram::DgramRepr;
use crate::wire::ethernet::{self, EtherType, EthernetAddress, EthernetRepr};
use crate::wire::stream::{Flags, SackBlocks, StreamRepr};
use crate::wire::xcmp::{Unreachable, XcmpRepr};
use crate::wire::xip::{NextHeader, XipRepr};
use crate::xid::{Principal, Xid, HID_BROADCAST, SID_XHCP};

/// One example frame and the XIP header it was built from.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What the frame is.
    pub name: &'static str,
    /// The XIP header as built (what a decoder must find).
    pub xip: XipRepr,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Deterministic identities for the samples: two ADs, their routers, hosts, a service.
#[derive(Debug, Clone)]
pub struct Cast {
    /// Key of AD 1.
    pub ad1_key: Keypair,
    /// Key of AD 2.
    pub ad2_key: Keypair,
    /// Key of host A (in AD 1).
    pub host_a_key: Keypair,
    /// HID key of the router of AD 1 (it co-signs AD 1's beacons and distance vectors).
    pub router1_key: Keypair,
    /// AD 1.
    pub ad1: Xid,
    /// AD 2.
    pub ad2: Xid,
    /// Router of AD 1.
    pub router1: Xid,
    /// Router of AD 2.
    pub router2: Xid,
    /// Host A.
    pub host_a: Xid,
    /// Host B (in AD 2).
    pub host_b: Xid,
    /// A service on host B.
    pub service: Xid,
}

impl Default for Cast {
    fn default() -> Self {
        let k = |b: u8| Keypair::from_seed([b; 32]);
        Cast {
            ad1_key: k(1),
            ad2_key: k(2),
            host_a_key: k(3),
            router1_key: k(11),
            ad1: k(1).xid(Principal::Ad),
            ad2: k(2).xid(Principal::Ad),
            router1: k(11).xid(Principal::Hid),
            router2: k(12).xid(Principal::Hid),
            host_a: k(3).xid(Principal::Hid),
            host_b: k(4).xid(Principal::Hid),
            service: k(5).xid(Principal::Sid),
        }
    }
}

const MAC_A: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x00, 0x00, 0x0a]);
const MAC_R: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]);

/// An Ethernet frame carrying `xip` and `transport` (the XIP payload), its integrity check
/// filled in as a node sends it ([`crate::wire::integrity`]).
pub fn frame(src: EthernetAddress, dst: EthernetAddress, xip: &XipRepr, transport: &[u8]) -> Vec<u8> {
    let mut x = xip.clone();
    x.payload_len = transport.len();
    let mut f = vec![0u8; ethernet::HEADER_LEN + x.buffer_len()];
    EthernetRepr { src, dst, ethertype: EtherType::Xip }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
        .expect("room for the Ethernet header");
    let body = &mut f[ethernet::HEADER_LEN..];
    x.emit(body).expect("room for the XIP header");
    body[x.header_len()..].copy_from_slice(transport);
    crate::wire::integrity::seal_frame(&mut f);
    f
}

fn sample(name: &'static str, next: NextHeader, dst: Dag, src: Dag, transport: Vec<u8>) -> Sample {
    let xip = XipRepr::new(next, dst, src, transport.len());
    Sample { name, frame: frame(MAC_A, MAC_R, &xip, &transport), xip }
}

fn bytes(emit: impl FnOnce(&mut [u8]) -> crate::wire::Result<()>, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    emit(&mut v).expect("sample emits");
    v
}

/// Every sample frame.
pub fn samples() -> Vec<Sample> {
    let c = Cast::default();
    let svc = Dag::service(c.ad2, c.host_b, c.service).expect("distinct XIDs");
    let host_a = Dag::host(c.ad1, c.host_a).expect("distinct XIDs");
    let host_b = Dag::host(c.ad2, c.host_b).expect("distinct XIDs");
    let b_via_ip = Dag::with_fallback(&[Xid::from_ipv4(Ipv4Addr::new(192, 0, 2, 7))], &[c.ad2, c.host_b])
        .expect("fallback DAG");
    let content = b"a chunk of content".repeat(16);
    let cid = Xid::cid_of(&content);
    let cid_dag = Dag::content(cid, c.ad2, c.host_b).expect("distinct XIDs");
    let mut out = Vec::new();

    out.push(sample("data", NextHeader::Data, svc.clone(), host_a.clone(), b"hello, XIA".to_vec()));

    let echo = XcmpRepr::EchoRequest { ident: 0x4242, seq: 1, data: &[0x5a; 56] };
    let echo_bytes = bytes(|b| echo.emit(b), echo.buffer_len());
    out.push(sample("xcmp-echo-request", NextHeader::Xcmp, b_via_ip.clone(), host_a.clone(), echo_bytes));
    let reply = XcmpRepr::EchoReply { ident: 0x4242, seq: 1, data: &[0x5a; 56] };
    let reply_bytes = bytes(|b| reply.emit(b), reply.buffer_len());
    out.push(sample("xcmp-echo-reply", NextHeader::Xcmp, host_a.clone(), host_b.clone(), reply_bytes));

    let quoted = out[0].frame[ethernet::HEADER_LEN..].to_vec();
    let original = XcmpRepr::quote(&quoted);
    let unreach = XcmpRepr::DstUnreachable { reason: Unreachable::Net, original };
    let unreach_bytes = bytes(|b| unreach.emit(b), unreach.buffer_len());
    let r1 = Dag::host(c.ad1, c.router1).expect("distinct XIDs");
    out.push(sample("xcmp-unreachable", NextHeader::Xcmp, host_a.clone(), r1.clone(), unreach_bytes));
    let exceeded = XcmpRepr::TimeExceeded { code: 0, original };
    let exceeded_bytes = bytes(|b| exceeded.emit(b), exceeded.buffer_len());
    out.push(sample("xcmp-time-exceeded", NextHeader::Xcmp, host_a.clone(), r1.clone(), exceeded_bytes));

    let dgram = DgramRepr { payload: b"datagram to a SID" };
    let dgram_bytes = bytes(|b| dgram.emit(b), dgram.buffer_len());
    out.push(sample("dgram", NextHeader::Dgram, svc.clone(), host_a.clone(), dgram_bytes));

    let syn = StreamRepr {
        flags: Flags::SYN,
        seq: 1000,
        window: 65535,
        mss: Some(8900),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((1, 0)),
        ..StreamRepr::default()
    };
    let syn_bytes = bytes(|b| syn.emit(b), syn.buffer_len());
    out.push(sample("stream-syn", NextHeader::Stream, svc.clone(), host_a.clone(), syn_bytes));
    let data = StreamRepr {
        flags: Flags::ACK | Flags::PSH,
        seq: 1001,
        ack: 5001,
        window: 4096,
        timestamps: Some((2, 1)),
        sack: SackBlocks::new(&[(6001, 7001)]).expect("one block"),
        payload: b"stream bytes",
        ..StreamRepr::default()
    };
    let data_bytes = bytes(|b| data.emit(b), data.buffer_len());
    out.push(sample("stream-data", NextHeader::Stream, svc.clone(), host_a.clone(), data_bytes));

    let req = ChunkRepr::Request { request_id: 1, offset: 0, length: 0 };
    let req_bytes = bytes(|b| req.emit(b), req.buffer_len());
    out.push(sample("chunk-request", NextHeader::Chunk, cid_dag.clone(), host_a.clone(), req_bytes));
    let resp = ChunkRepr::Response {
        request_id: 1,
        offset: 0,
        total_len: content.len() as u32,
        no_store: false,
        data: &content,
    };
    let resp_bytes = bytes(|b| resp.emit(b), resp.buffer_len());
    out.push(sample("chunk-response", NextHeader::Chunk, host_a.clone(), cid_dag.clone(), resp_bytes));
    let nack = ChunkRepr::Nack { request_id: 2, reason: NackReason::NotFound };
    let nack_bytes = bytes(|b| nack.emit(b), nack.buffer_len());
    out.push(sample("chunk-nack", NextHeader::Chunk, host_a.clone(), cid_dag.clone(), nack_bytes));

    let ns = Dag::service(c.ad1, c.host_a, crate::xid::SID_NS).expect("distinct XIDs");
    let stamp = |millis| Stamp { seq: 1, timestamp_ms: 1_800_000_000_000, millis };
    let beacon = ControlBody::Beacon(Box::new(Beacon {
        ad: c.ad1,
        router_hid: c.router1,
        stamp: stamp(100),
        name_server: Some(ns),
    }));
    let beacon_msg =
        beacon.seal_cosigned(&c.ad1_key, &c.router1_key).expect("AD key signs its beacon, its router too");
    let beacon_dgram = DgramRepr { payload: &beacon_msg };
    let beacon_bytes = bytes(|b| beacon_dgram.emit(b), beacon_dgram.buffer_len());
    let bcast = Dag::linear(&[HID_BROADCAST, SID_XHCP]).expect("broadcast DAG");
    out.push(sample("control-beacon", NextHeader::Dgram, bcast, r1.clone(), beacon_bytes));

    // Host A moved to AD 2, registered there, and got AD 2's receipt.
    let receipt = HostRegistered { hid: c.host_a, ad: c.ad2, router: c.router2, stamp: stamp(30_000) };
    let sealed_receipt =
        ControlBody::HostRegistered(receipt).seal(&c.ad2_key).expect("AD key signs receipts");
    let patch =
        ControlBody::RoutePatch(Box::new(RoutePatch { stamp: stamp(30_000), receipt, sealed_receipt }));
    let patch_msg = patch.seal(&c.host_a_key).expect("host key signs its patch");
    let patch_dgram = DgramRepr { payload: &patch_msg };
    let patch_bytes = bytes(|b| patch_dgram.emit(b), patch_dgram.buffer_len());
    let xroute = Dag::linear(&[c.ad1, c.router1, crate::xid::SID_XROUTE]).expect("router DAG");
    out.push(sample(
        "control-route-patch",
        NextHeader::Dgram,
        xroute,
        Dag::host(c.ad2, c.host_a).expect("distinct XIDs"),
        patch_bytes,
    ));

    // Router 1's distance vector: its own AD, and AD 2 one hop away.
    let dv = ControlBody::AdRoutes(Box::new(AdRoutes {
        ad: c.ad1,
        router_hid: c.router1,
        stamp: stamp(500),
        routes: vec![(c.ad1, 0), (c.ad2, 1)],
        page: 0,
        pages: 1,
    }));
    let dv_msg = dv.seal_cosigned(&c.ad1_key, &c.router1_key).expect("AD and router keys sign its routes");
    let dv_dgram = DgramRepr { payload: &dv_msg };
    let dv_bytes = bytes(|b| dv_dgram.emit(b), dv_dgram.buffer_len());
    let to_routers = Dag::linear(&[HID_BROADCAST, crate::xid::SID_XROUTE]).expect("broadcast DAG");
    out.push(sample("control-ad-routes", NextHeader::Dgram, to_routers, r1.clone(), dv_bytes));

    // As it leaves the destination AD's router: AD satisfied, edge marked visited.
    let mut fwd = out[0].clone();
    fwd.name = "data-forwarded";
    let mut last = fwd.xip.last_node;
    select(&mut fwd.xip.dst, &mut last, |x| if *x == c.ad2 { Lookup::Local } else { Lookup::NextHop(()) })
        .expect("valid DAG");
    fwd.xip.last_node = last;
    fwd.xip.hop_limit -= 1;
    fwd.frame =
        frame(MAC_R, MAC_A, &fwd.xip, &out[0].frame[ethernet::HEADER_LEN + out[0].xip.header_len()..]);
    out.push(fwd);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xip::Packet;

    #[test]
    fn every_sample_parses_back() {
        for s in samples() {
            let f = ethernet::Frame::new_checked(&s.frame[..]).unwrap();
            assert_eq!(f.ethertype(), EtherType::Xip);
            let p = Packet::new_checked(f.payload()).unwrap();
            assert_eq!(XipRepr::parse(&p).unwrap(), s.xip, "{}", s.name);
        }
    }
}
