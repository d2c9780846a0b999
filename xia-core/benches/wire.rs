//! Micro-benchmarks of the per-packet work: XIP parse + next-hop selection for DAGs with 0, 1
//! and 3 fallbacks, and CID hashing. `cargo bench -p xia-core --bench wire`.
//!
//! A small harness instead of a framework keeps the build lean: each case runs in batches sized
//! to ~20 ms, 15 batches, and the median batch gives ns/op (the machine is shared and noisy;
//! medians resist that). Results go to stdout as a table.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use xia_core::dag::Dag;
use xia_core::select::{select, Lookup};
use xia_core::wire::integrity;
use xia_core::wire::xip::{NextHeader, Packet, XipRepr};
use xia_core::xid::{sha1_of, Principal, Xid, XidMap};

/// Median ns per call of `f`.
fn measure(mut f: impl FnMut()) -> f64 {
    // Calibrate a batch to ~20 ms.
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        n *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// A router's tables: one exact-match map per principal, 1000 routes each.
struct Tables {
    ad: XidMap<u16>,
    hid: XidMap<u16>,
    ip: XidMap<u16>,
}

impl Tables {
    fn new() -> Tables {
        let mut t = Tables { ad: XidMap::default(), hid: XidMap::default(), ip: XidMap::default() };
        for i in 0..1000u32 {
            t.ad.insert(sha1_of(&[b"ad".as_slice(), &i.to_be_bytes()].concat()), (i % 4) as u16);
            t.hid.insert(sha1_of(&[b"hid".as_slice(), &i.to_be_bytes()].concat()), (i % 4) as u16);
            t.ip.insert(*Xid::from_ipv4(Ipv4Addr::from(0x0a00_0000 + i)).id(), (i % 4) as u16);
        }
        t
    }

    #[inline]
    fn lookup(&self, x: &Xid) -> Lookup<u16> {
        let table = match x.principal() {
            Principal::Ad => &self.ad,
            Principal::Hid => &self.hid,
            Principal::Ip => &self.ip,
            _ => return Lookup::Miss,
        };
        table.get(x.id()).map_or(Lookup::Miss, |&p| Lookup::NextHop(p))
    }
}

fn xid(p: Principal, tag: &str, i: u32) -> Xid {
    Xid::new(p, sha1_of(&[tag.as_bytes(), &i.to_be_bytes()].concat()))
}

fn packet(dst: Dag) -> Vec<u8> {
    let src = Dag::host(xid(Principal::Ad, "ad", 7), xid(Principal::Hid, "hid", 7)).unwrap();
    XipRepr::new(NextHeader::Data, dst, src, 0).to_bytes(&[0u8; 64]).unwrap()
}

fn main() {
    let t = Tables::new();
    let known_ad = xid(Principal::Ad, "ad", 1);
    let unknown = |i| xid(Principal::Ad, "unknown-ad", i);
    let hid = xid(Principal::Hid, "hid-elsewhere", 1);
    let sid = xid(Principal::Sid, "sid", 1);
    let ip = Xid::from_ipv4(Ipv4Addr::new(10, 0, 0, 5));

    // The entry router's view: the first usable edge is the primary (0 fallbacks tried), the
    // second (1) or the fourth (3); every miss before it costs one table lookup.
    let cases: Vec<(&str, Dag)> = vec![
        ("0 fallbacks (RE AD HID SID)", Dag::service(known_ad, hid, sid).unwrap()),
        ("1 fallback (RE ( IP ) AD HID)", Dag::with_fallback(&[ip], &[unknown(1), hid]).unwrap()),
        (
            "3 fallbacks (entry: 3 unknown ADs, then IP)",
            Dag::from_paths(&[&[unknown(1), hid], &[unknown(2), hid], &[unknown(3), hid], &[ip, hid]])
                .unwrap(),
        ),
    ];

    println!("XIP parse + next-hop selection, median of 15 batches (ns/packet)");
    println!("{:<46} {:>12} {:>12}", "destination DAG", "router path", "full parse");
    for (name, dag) in &cases {
        let mut buf = packet(dag.clone());
        // Router fast path: length checks, then selection in place on the bytes.
        let fast = measure(|| {
            let mut p = Packet::new_checked(black_box(&mut buf[..])).unwrap();
            let (mut nodes, last) = p.dst_nodes_mut();
            black_box(select(&mut nodes, last, |x| t.lookup(x)).unwrap());
        });
        // Host / slow path: full validation into a Repr (both DAGs copied), then selection.
        let full = measure(|| {
            let repr = XipRepr::parse(&Packet::new_checked(black_box(&buf[..])).unwrap()).unwrap();
            let mut dst = repr.dst;
            let mut last = repr.last_node;
            black_box(select(&mut dst, &mut last, |x| t.lookup(x)).unwrap());
        });
        println!("{name:<46} {fast:>12.1} {full:>12.1}");
    }

    println!();
    println!("CID = SHA-1(content), median of 15 batches");
    for size in [8 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let ns = measure(|| {
            black_box(Xid::cid_of(black_box(&data)));
        });
        println!("{:>8} bytes: {:>10.0} ns/chunk  {:>6.2} GB/s", size, ns, size as f64 / ns);
    }

    println!();
    println!("Integrity check (CRC32C) of a whole packet, median of 15 batches");
    let dag = Dag::service(
        xid(Principal::Ad, "ad", 1),
        xid(Principal::Hid, "hid", 1),
        xid(Principal::Sid, "sid", 1),
    )
    .expect("a DAG");
    for payload in [1400usize, 8800] {
        let d = xia_core::wire::dgram::DgramRepr { payload: &vec![7u8; payload] };
        let x = XipRepr::new(NextHeader::Dgram, dag.clone(), dag.clone(), d.buffer_len());
        let mut p = vec![0u8; x.buffer_len()];
        x.emit(&mut p).expect("room");
        d.emit(&mut p[x.header_len()..]).expect("room");
        let ns = measure(|| {
            black_box(integrity::seal(black_box(&mut p)));
        });
        println!("{:>8} bytes: {:>10.0} ns/packet  {:>6.2} GB/s", p.len(), ns, p.len() as f64 / ns);
    }
    let data: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let ns = measure(|| {
        black_box(integrity::Crc32c::of(black_box(&data)));
    });
    println!(
        "{:>8} bytes: {:>10.0} ns/buffer  {:>6.2} GB/s (CRC32C alone)",
        data.len(),
        ns,
        data.len() as f64 / ns
    );
}
