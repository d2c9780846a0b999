//! Whole hosts over the simulated link: XARP, ping, datagrams, streams, chunks, beacons and
//! registration, hostile frames.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::host::{Handle, Host, HostConfig, HostError, HostEvent};
use crate::keys::Keypair;
use crate::link::sim::{SimConfig, SimLink};
use crate::rng::Rng;
use crate::wire::control::{Beacon, ControlBody, HostRegistered, Stamp};
use crate::wire::dgram::DgramRepr;
use crate::wire::ethernet::{self, EtherType, EthernetAddress, EthernetRepr};
use crate::wire::integrity;
use crate::wire::xip::{NextHeader, XipRepr};
use crate::xid::{Principal, Xid, HID_BROADCAST, SID_XHCP};

const MTU: usize = 9000;
const WALL: u64 = 1_800_000_000_000;

fn config(ad: Option<Xid>, seed: u64) -> HostConfig {
    HostConfig { mtu: MTU, static_ad: ad, seed: Some(seed), ..HostConfig::default() }
}

/// Two hosts on one simulated link.
struct Net {
    now: Instant,
    t0: Instant,
    a: Host,
    b: Host,
    ab: SimLink,
    ba: SimLink,
    buf: Vec<u8>,
    a_events: Vec<HostEvent>,
    b_events: Vec<HostEvent>,
}

impl Net {
    fn new(link: SimConfig, seed: u64) -> Net {
        let now = Instant::now();
        let ad = Some(Xid::new(Principal::Ad, [0xad; 20]));
        let a = Host::new(
            config(ad, seed),
            Keypair::from_seed([1; 32]),
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            now,
            WALL,
        );
        let b = Host::new(
            config(ad, seed + 1),
            Keypair::from_seed([2; 32]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            now,
            WALL,
        );
        Net {
            now,
            t0: now,
            a,
            b,
            ab: SimLink::new(link.clone(), seed),
            ba: SimLink::new(link, seed ^ 0x5555),
            buf: vec![0u8; MTU + 14],
            a_events: Vec::new(),
            b_events: Vec::new(),
        }
    }

    /// Moves frames both ways at `now`; true if anything moved.
    fn exchange(&mut self) -> bool {
        let mut moved = false;
        while let Some(n) = self.a.poll_transmit(self.now, &mut self.buf) {
            self.ab.send(self.now, self.buf[..n].to_vec());
            moved = true;
        }
        while let Some(n) = self.b.poll_transmit(self.now, &mut self.buf) {
            self.ba.send(self.now, self.buf[..n].to_vec());
            moved = true;
        }
        while let Some(f) = self.ab.poll_deliver(self.now) {
            self.b.handle_frame(self.now, &f);
            moved = true;
        }
        while let Some(f) = self.ba.poll_deliver(self.now) {
            self.a.handle_frame(self.now, &f);
            moved = true;
        }
        while let Some(e) = self.a.poll_event() {
            self.a_events.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.b_events.push(e);
        }
        moved
    }

    fn advance(&mut self) -> bool {
        let next =
            [self.a.poll_timeout(), self.b.poll_timeout(), self.ab.next_delivery(), self.ba.next_delivery()]
                .into_iter()
                .flatten()
                .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }

    /// Runs until `done` holds (checked after every exchange), within `limit` simulated time.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) {
        let start = self.now;
        loop {
            let moved = self.exchange();
            if done(self) {
                return;
            }
            if !moved && !self.advance() {
                panic!("nothing left to do and the condition does not hold");
            }
            assert!(self.now.duration_since(start) < limit, "condition not met within {limit:?}");
        }
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

#[test]
fn ping_over_a_bare_link_resolves_the_neighbour() {
    let mut n = Net::new(SimConfig::default(), 1);
    let p = n.a.ping_open();
    let dst = n.b.dag();
    n.a.ping_send(n.now, p, &dst, 1, &[0x5a; 56]).unwrap();
    n.run_until(Duration::from_secs(1), |n| {
        n.a_events.iter().any(|e| matches!(e, HostEvent::EchoReply { .. }))
    });
    let Some(HostEvent::EchoReply { owner, seq, from, data }) =
        n.a_events.iter().find(|e| matches!(e, HostEvent::EchoReply { .. }))
    else {
        unreachable!()
    };
    assert_eq!((*owner, *seq, data.len()), (p, 1, 56));
    assert_eq!(from, &n.b.dag());
    assert_eq!(n.b.stats().echo_replies, 1);
}

#[test]
fn datagrams_between_sids() {
    let mut n = Net::new(SimConfig::default(), 2);
    let (sa, _) = n.a.dgram_bind(None).unwrap();
    let sid_b = Xid::new(Principal::Sid, [0x5b; 20]);
    let (sb, _) = n.b.dgram_bind(Some(sid_b)).unwrap();
    assert_eq!(n.b.dgram_bind(Some(sid_b)).unwrap_err(), HostError::AddrInUse);
    let dst = n.b.service_dag(sid_b);
    for i in 0..10u8 {
        n.a.dgram_send(n.now, sa, &dst, &[i; 100]).unwrap();
    }
    n.run_until(Duration::from_secs(1), |n| n.b.stats().dgrams_in == 10);
    let (from, first) = n.b.dgram_recv(sb).unwrap();
    assert_eq!(first, vec![0u8; 100]);
    // Echo it back to the sender's DAG.
    n.b.dgram_send(n.now, sb, &from, b"echo").unwrap();
    n.run_until(Duration::from_secs(1), |n| n.a.stats().dgrams_in == 1);
    assert_eq!(n.a.dgram_recv(sa).unwrap().1, b"echo");
    // Too large is a typed error, not a drop.
    let max = n.a.dgram_max(sa, &dst).unwrap();
    assert!(max > 8000 && max < MTU);
    assert_eq!(
        n.a.dgram_send(n.now, sa, &dst, &vec![0; max + 1]),
        Err(HostError::TooLarge { len: max + 1, max })
    );
}

#[test]
fn datagram_loss_matches_the_links() {
    let mut n = Net::new(SimConfig { loss: 0.1, ..SimConfig::default() }, 3);
    let (sa, _) = n.a.dgram_bind(None).unwrap();
    let (sb, sid_b) = n.b.dgram_bind(None).unwrap();
    let dst = n.b.service_dag(sid_b);
    // Resolve the neighbour first (XARP can be lost too).
    let p = n.a.ping_open();
    while !n.a_events.iter().any(|e| matches!(e, HostEvent::EchoReply { .. })) {
        n.a.ping_send(n.now, p, &dst, 0, b"x").unwrap();
        let until = n.now + Duration::from_millis(50);
        while n.now < until {
            if !n.exchange() && !n.advance() {
                break;
            }
        }
    }
    let before = n.ab.stats();
    let mut got = 0;
    for i in 0..5000u32 {
        n.a.dgram_send(n.now, sa, &dst, &i.to_be_bytes()).unwrap();
        n.exchange();
        while n.b.dgram_recv(sb).is_some() {
            got += 1;
        }
    }
    n.run_until(Duration::from_secs(1), |n| {
        while n.b.dgram_recv(sb).is_some() {
            got += 1;
        }
        n.ab.next_delivery().is_none()
    });
    let lost_by_link = n.ab.stats().lost - before.lost;
    assert_eq!(got + lost_by_link as usize, 5000, "every datagram the link kept arrived");
    assert!((400..600).contains(&lost_by_link), "{lost_by_link}");
}

fn stream_transfer(link: SimConfig, seed: u64, len: usize) -> Net {
    let mut n = Net::new(link, seed);
    let sid = Xid::new(Principal::Sid, [0x77; 20]);
    let l = n.b.listen(sid).unwrap();
    let c = n.a.connect(n.now, n.b.service_dag(sid)).unwrap();
    let data = random(len, seed);
    let mut sent = 0;
    let mut got: Vec<u8> = Vec::with_capacity(len);
    let mut server: Option<Handle> = None;
    let mut tmp = vec![0u8; 1 << 20];
    let mut closed = false;
    n.run_until(Duration::from_secs(120), |n| {
        if sent < data.len() {
            let w = n.a.stream(c).unwrap().write(&data[sent..]).unwrap();
            sent += w;
            n.a.stream_touched(c);
            if sent == data.len() {
                n.a.close(c);
            }
        }
        if server.is_none() {
            server = n.b.accept(l).map(|(h, _)| h);
        }
        if let Some(h) = server {
            loop {
                let r = n.b.stream(h).unwrap().read(&mut tmp);
                if r == 0 {
                    break;
                }
                got.extend_from_slice(&tmp[..r]);
            }
            n.b.stream_touched(h);
            if !closed && n.b.stream(h).unwrap().is_read_closed() {
                n.b.close(h);
                closed = true;
            }
        }
        got.len() == data.len() && closed
    });
    assert!(got == data, "stream bytes differ");
    n
}

#[test]
fn stream_64mib_between_hosts() {
    let n = stream_transfer(SimConfig::default(), 4, 64 << 20);
    assert!(n.a.stats().segments_out > 7000);
}

#[test]
fn stream_16mib_between_hosts_under_loss_reorder_duplication() {
    stream_transfer(SimConfig::impaired(0.02, 0.05, 0.01), 5, 16 << 20);
}

/// One frame in a hundred arrives with a bit flipped (the link at 10 Gbit/s, 50 us one way):
/// every damaged segment is dropped by its check and sent again, the stream is byte-exact.
#[test]
fn stream_64mib_with_bit_flips_in_1_percent_of_frames() {
    let n = stream_transfer(SimConfig { corrupt: 0.01, ..SimConfig::default() }, 14, 64 << 20);
    let (a, b) = (n.a.stats(), n.b.stats());
    eprintln!(
        "bit flips: {} segments and {} acknowledgments dropped by their check",
        b.drop_bad_check, a.drop_bad_check
    );
    assert!(b.drop_bad_check > 50 && a.drop_bad_check > 0, "{a:?} {b:?}");
}

#[test]
fn stream_to_a_closed_port_is_refused() {
    let mut n = Net::new(SimConfig::default(), 6);
    let c = n.a.connect(n.now, n.b.service_dag(Xid::new(Principal::Sid, [9; 20]))).unwrap();
    n.run_until(Duration::from_secs(1), |n| {
        n.a_events.iter().any(|e| matches!(e, HostEvent::StreamClosed(..)))
    });
    assert!(n
        .a_events
        .contains(&HostEvent::StreamClosed(c, Some(crate::transport::stream::StreamError::Refused))));
    assert!(n.b.stats().resets_sent >= 1);
}

fn chunk_fetch(link: SimConfig, seed: u64, chunks: usize, size: usize) -> Net {
    let mut n = Net::new(link, seed);
    let data: Vec<Vec<u8>> = (0..chunks).map(|i| random(size, seed * 100 + i as u64)).collect();
    let owner = n.a.fetch_owner();
    for (i, d) in data.iter().enumerate() {
        let cid = n.b.chunk_put(Arc::from(&d[..])).unwrap();
        let dag = n.b.content_dag(cid);
        n.a.chunk_fetch(n.now, owner, cid, dag, None, i as u64);
    }
    n.run_until(Duration::from_secs(120), |n| {
        n.a_events.iter().filter(|e| matches!(e, HostEvent::ChunkDone { .. })).count() == chunks
    });
    for e in &n.a_events {
        if let HostEvent::ChunkDone { tag, result, .. } = e {
            assert!(result.as_ref().unwrap()[..] == data[*tag as usize][..], "chunk {tag} differs");
        }
    }
    n
}

#[test]
fn chunk_64mib_between_hosts() {
    let n = chunk_fetch(SimConfig::default(), 7, 64, 1 << 20);
    assert!(n.b.stats().chunk_pieces_out > 7000);
    // The first requests come from a host the publisher has not resolved yet: they are
    // answered once it has, not dropped (and left to time out).
    assert_eq!(n.b.stats().drop_unresolved, 0);
    let (fetch, _, _) = n.a.fetch_stats();
    assert_eq!((fetch.timeouts, fetch.requests_repeated), (0, 0), "{fetch:?}");
}

#[test]
fn chunk_16mib_between_hosts_under_loss_reorder_duplication() {
    chunk_fetch(SimConfig::impaired(0.02, 0.05, 0.01), 8, 16, 1 << 20);
}

/// The same for chunks: 64 chunks of 1 MiB, one frame in a hundred damaged: no piece that
/// fails its check is taken, every chunk arrives whole and verified by its CID.
#[test]
fn chunk_64mib_with_bit_flips_in_1_percent_of_frames() {
    let n = chunk_fetch(SimConfig { corrupt: 0.01, ..SimConfig::default() }, 15, 64, 1 << 20);
    let a = n.a.stats();
    eprintln!("bit flips: {} pieces dropped by their check", a.drop_bad_check);
    assert!(a.drop_bad_check > 50, "{a:?}");
    let (fetch, _, _) = n.a.fetch_stats();
    assert_eq!(fetch.corrupt_chunks, 0, "a damaged piece reached a chunk: {fetch:?}");
}

#[test]
fn unknown_content_is_a_typed_error() {
    let mut n = Net::new(SimConfig::default(), 9);
    let owner = n.a.fetch_owner();
    let cid = Xid::cid_of(b"not published");
    let dag = n.b.content_dag(cid);
    n.a.chunk_fetch(n.now, owner, cid, dag, None, 1);
    n.run_until(Duration::from_secs(5), |n| {
        n.a_events.iter().any(|e| matches!(e, HostEvent::ChunkDone { .. }))
    });
    assert!(n.a_events.iter().any(|e| matches!(
        e,
        HostEvent::ChunkDone { result: Err(crate::transport::chunk::ChunkError::NotFound), .. }
    )));
}

/// A frame from a (simulated) router: a beacon or a receipt.
fn control_frame(
    from_mac: EthernetAddress,
    to: EthernetAddress,
    dst: &Dag,
    src: &Dag,
    body: &ControlBody,
    key: &Keypair,
    router: &Keypair,
) -> Vec<u8> {
    let msg = match body.cosigner() {
        Some(_) => body.seal_cosigned(key, router).unwrap(),
        None => body.seal(key).unwrap(),
    };
    let d = DgramRepr { payload: &msg };
    let mut dgram = vec![0u8; d.buffer_len()];
    d.emit(&mut dgram).unwrap();
    let x = XipRepr::new(NextHeader::Dgram, dst.clone(), src.clone(), dgram.len());
    let mut f = vec![0u8; 14 + x.buffer_len()];
    EthernetRepr { src: from_mac, dst: to, ethertype: EtherType::Xip }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
        .unwrap();
    x.emit(&mut f[14..]).unwrap();
    f[14 + x.header_len()..].copy_from_slice(&dgram);
    integrity::seal_frame(&mut f);
    f
}

#[test]
fn beacons_attach_the_host_and_registration_gets_a_receipt() {
    // A host with no AD of its own: it takes one from the beacons.
    let now = Instant::now();
    let mut a = Host::new(
        config(None, 10),
        Keypair::from_seed([1; 32]),
        EthernetAddress([2, 0, 0, 0, 0, 1]),
        now,
        WALL,
    );
    let ad_key = Keypair::from_seed([0xa0; 32]);
    let router_key = Keypair::from_seed([0xa1; 32]);
    let (ad, router) = (ad_key.xid(Principal::Ad), router_key.xid(Principal::Hid));
    let rmac = EthernetAddress([2, 0, 0, 0, 0, 0xee]);
    let beacon = |seq| {
        ControlBody::Beacon(Box::new(Beacon {
            ad,
            router_hid: router,
            stamp: Stamp { seq, timestamp_ms: WALL, millis: 100 },
            name_server: None,
        }))
    };
    let bcast = Dag::linear(&[HID_BROADCAST, SID_XHCP]).unwrap();
    let rdag = Dag::host(ad, router).unwrap();
    a.handle_frame(
        now,
        &control_frame(rmac, EthernetAddress::BROADCAST, &bcast, &rdag, &beacon(5), &ad_key, &router_key),
    );
    assert_eq!(a.ad(), Some(ad));
    assert_eq!(a.gateway(), Some(router));
    assert_eq!(a.poll_event(), Some(HostEvent::Attached { ad, router }));
    // A replay is refused, as is a beacon signed by someone else.
    a.handle_frame(
        now,
        &control_frame(rmac, EthernetAddress::BROADCAST, &bcast, &rdag, &beacon(5), &ad_key, &router_key),
    );
    assert_eq!(a.stats().drop_stale_control, 1);
    let rogue = Keypair::from_seed([0xbb; 32]);
    let forged =
        control_frame(rmac, EthernetAddress::BROADCAST, &bcast, &rdag, &beacon(6), &ad_key, &router_key);
    let mut tampered = forged.clone();
    let k = tampered.len() - 96;
    tampered[k..k + 32].copy_from_slice(&rogue.public().0);
    // The check is no defence against an attacker (anyone can compute it): the signature is.
    integrity::seal_frame(&mut tampered);
    a.handle_frame(now, &tampered);
    assert_eq!(a.stats().drop_bad_control, 1);
    // The host registers with its new gateway.
    a.handle_timeout(now);
    let mut buf = vec![0u8; MTU + 14];
    let len = a.poll_transmit(now, &mut buf).expect("a registration is sent");
    let f = ethernet::Frame::new_checked(&buf[..len]).unwrap();
    assert_eq!(f.dst_addr(), rmac);
    let x = XipRepr::parse(&crate::wire::xip::Packet::new_checked(f.payload()).unwrap()).unwrap();
    let d =
        DgramRepr::parse(&crate::wire::dgram::Packet::new_checked(&f.payload()[x.header_len()..]).unwrap())
            .unwrap();
    let ControlBody::HostRegister(reg) = crate::wire::control::open(d.payload).unwrap() else {
        panic!("not a registration")
    };
    assert_eq!((reg.hid, reg.ad, reg.router), (a.hid(), ad, router));
    // The router's receipt.
    let receipt = ControlBody::HostRegistered(HostRegistered { hid: reg.hid, ad, router, stamp: reg.stamp });
    let to_host = a.service_dag(SID_XHCP);
    a.handle_frame(now, &control_frame(rmac, a.mac(), &to_host, &rdag, &receipt, &ad_key, &router_key));
    assert_eq!(a.poll_event(), Some(HostEvent::Registered { ad, router }));
    assert!(a.registration_receipt().is_some());
    // With a gateway, traffic to another AD goes to the router's MAC.
    let p = a.ping_open();
    let elsewhere = Dag::host(Xid::new(Principal::Ad, [7; 20]), Xid::new(Principal::Hid, [8; 20])).unwrap();
    a.ping_send(now, p, &elsewhere, 1, b"hi").unwrap();
    let len = a.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(ethernet::Frame::new_checked(&buf[..len]).unwrap().dst_addr(), rmac);
}

#[test]
fn hostile_frames_are_counted_and_survived() {
    let mut n = Net::new(SimConfig::default(), 11);
    let mut rng = Rng::new(11);
    let template = {
        let x = XipRepr::new(
            NextHeader::Stream,
            n.a.service_dag(Xid::new(Principal::Sid, [1; 20])),
            n.b.dag(),
            20,
        );
        let mut f = vec![0u8; 14 + x.buffer_len()];
        EthernetRepr { src: n.b.mac(), dst: n.a.mac(), ethertype: EtherType::Xip }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
            .unwrap();
        x.emit(&mut f[14..]).unwrap();
        integrity::seal_frame(&mut f);
        f
    };
    for i in 0..200_000u32 {
        let f = match i % 4 {
            // Pure noise.
            0 => {
                let mut v = vec![0u8; (rng.below(300) + 1) as usize];
                rng.fill(&mut v);
                v
            }
            // A valid header with random bytes after it, or flipped bits anywhere.
            1 | 2 => {
                let mut v = template.clone();
                let k = 14 + rng.below((v.len() - 14) as u64) as usize;
                v[k] ^= 1 << rng.below(8);
                if i % 4 == 2 {
                    v.truncate(14 + rng.below((v.len() - 14) as u64) as usize);
                }
                v
            }
            // Lying lengths.
            _ => {
                let mut v = template.clone();
                v[16] = rng.next_u64() as u8;
                v
            }
        };
        n.a.handle_frame(n.now, &f);
    }
    let s = n.a.stats();
    let dropped = s.drop_malformed
        + s.drop_not_for_us
        + s.drop_ethertype
        + s.drop_not_local
        + s.drop_bad_transport
        + s.drop_bad_check
        + s.drop_no_socket;
    assert!(dropped >= 190_000, "{s:?}");
    // Still works afterwards.
    let p = n.b.ping_open();
    let dst = n.a.dag();
    n.b.ping_send(n.now, p, &dst, 1, b"still there?").unwrap();
    n.run_until(Duration::from_secs(1), |n| {
        n.b_events.iter().any(|e| matches!(e, HostEvent::EchoReply { .. }))
    });
    let _ = n.t0;
}

#[test]
fn a_stream_to_this_very_host_flows_without_timeouts() {
    let mut n = Net::new(SimConfig::default(), 91);
    let sid = Xid::new(Principal::Sid, [0x78; 20]);
    let l = n.a.listen(sid).unwrap();
    let c = n.a.connect(n.now, n.a.service_dag(sid)).unwrap();
    let data = random(1 << 20, 91);
    let mut sent = 0;
    let mut got: Vec<u8> = Vec::new();
    let mut server: Option<Handle> = None;
    let mut tmp = vec![0u8; 1 << 20];
    let start = n.now;
    n.run_until(Duration::from_secs(60), |n| {
        if sent < data.len() {
            sent += n.a.stream(c).unwrap().write(&data[sent..]).unwrap();
            n.a.stream_touched(c);
        }
        if server.is_none() {
            server = n.a.accept(l).map(|(h, _)| h);
        }
        if let Some(h) = server {
            loop {
                let r = n.a.stream(h).unwrap().read(&mut tmp);
                if r == 0 {
                    break;
                }
                got.extend_from_slice(&tmp[..r]);
            }
            n.a.stream_touched(h);
        }
        got.len() == data.len()
    });
    assert!(got == data);
    assert!(n.now.duration_since(start) < Duration::from_millis(100), "{:?}", n.now.duration_since(start));
    assert_eq!(n.a.stream(c).unwrap().stats().rto_events, 0);
}

#[test]
fn applications_cannot_speak_for_the_host_control_service() {
    let mut n = Net::new(SimConfig::default(), 92);
    let (s, _) = n.a.dgram_bind(None).unwrap();
    let dst = n.a.service_dag(SID_XHCP);
    assert_eq!(n.a.dgram_send(n.now, s, &dst, b"beacon?"), Err(HostError::AddrInUse));
}

#[test]
fn forged_xarp_replies_are_not_believed() {
    use crate::wire::xarp::{Binding, XarpRepr};
    let mut n = Net::new(SimConfig::default(), 93);
    let mallory = Keypair::from_seed([0x66; 32]);
    let evil_mac = EthernetAddress([2, 0, 0, 0, 0, 0x66]);
    let b_hid = n.b.hid();
    // A asks for B...
    let p = n.a.ping_open();
    let dst = n.b.dag();
    n.a.ping_send(n.now, p, &dst, 1, b"x").unwrap();
    // ...and Mallory answers first, claiming B's HID with her own key, and then with B's
    // HID but a binding that does not verify.
    for binding in [
        Binding::sign(&mallory, evil_mac, WALL),
        Binding { timestamp_ms: WALL, ..Binding::sign(&mallory, evil_mac, 1) },
    ] {
        let reply = XarpRepr::Reply {
            sender: b_hid,
            sender_mac: evil_mac,
            target: n.a.hid(),
            target_mac: n.a.mac(),
            binding,
        };
        let mut f = vec![0u8; 14 + reply.buffer_len()];
        EthernetRepr { src: evil_mac, dst: n.a.mac(), ethertype: EtherType::Xarp }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
            .unwrap();
        reply.emit(&mut f[14..]).unwrap();
        n.a.handle_frame(n.now, &f);
    }
    assert_eq!(n.a.stats().drop_bad_control, 2);
    // B's real answer wins, and the ping goes to B.
    n.run_until(Duration::from_secs(1), |n| {
        n.a_events.iter().any(|e| matches!(e, HostEvent::EchoReply { .. }))
    });
}

#[test]
fn syn_floods_are_bounded_by_the_backlog() {
    use crate::wire::stream::{Flags, StreamRepr};
    let mut n = Net::new(SimConfig::default(), 94);
    let sid = Xid::new(Principal::Sid, [0x79; 20]);
    let _l = n.b.listen(sid).unwrap();
    let dst = n.b.service_dag(sid);
    for i in 0..1000u32 {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let src = Dag::service(Xid::new(Principal::Ad, [0xad; 20]), n.a.hid(), Xid::new(Principal::Sid, id))
            .unwrap();
        let syn = StreamRepr { flags: Flags::SYN, seq: i, window: 1000, ..StreamRepr::default() };
        let mut seg = vec![0u8; syn.buffer_len()];
        syn.emit(&mut seg).unwrap();
        let x = XipRepr::new(NextHeader::Stream, dst.clone(), src, seg.len());
        let mut f = vec![0u8; 14 + x.buffer_len()];
        EthernetRepr { src: n.a.mac(), dst: n.b.mac(), ethertype: EtherType::Xip }
            .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
            .unwrap();
        x.emit(&mut f[14..]).unwrap();
        f[14 + x.header_len()..].copy_from_slice(&seg);
        integrity::seal_frame(&mut f);
        n.b.handle_frame(n.now, &f);
    }
    let s = n.b.stats();
    assert_eq!(s.drop_queue_full, 1000 - 128, "{s:?}");
}
