//! xia-pktgen: sends one frame over and over, as fast as the interface takes it, for a
//! forwarding benchmark (the kernel's pktgen does not build XIP). The frame is an XIP packet to
//! a DAG, or an IPv4/UDP packet for the kernel-forwarding baseline, padded to a size.
//!
//! ```text
//! xia-pktgen -i IF --dst-mac MAC --seconds S [--size BYTES] (--dag "DAG ..." | --ipv4 SRC,DST)
//! ```
//!
//! Prints `sent N frames in T s: R pps` on stdout at the end.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xia_core::dag::Dag;
use xia_core::link::afpacket::{LinkOptions, PacketSocket};
use xia_core::wire::ethernet::{self, EtherType, EthernetAddress, EthernetRepr};
use xia_core::wire::xip::{NextHeader, XipRepr};
use xia_core::xid::{Principal, Xid};

const USAGE: &str = "\
usage: xia-pktgen -i IF --dst-mac MAC --seconds S [--size BYTES] (--dag DAG | --ipv4 SRC,DST)
Sends one frame over and over for S seconds:
  --dag DAG        an XIP packet (DGRAM, no payload but padding) to DAG, from a fixed host DAG
  --ipv4 SRC,DST   an IPv4/UDP packet from SRC to DST
  --size BYTES     the frame's length (default: the smallest the header allows, 60 at least)";

#[derive(Debug)]
enum Kind {
    Xip(Box<Dag>),
    Ipv4(Ipv4Addr, Ipv4Addr),
}

#[derive(Debug)]
struct Args {
    ifname: String,
    dst: EthernetAddress,
    seconds: f64,
    size: Option<usize>,
    kind: Kind,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut ifname, mut dst, mut seconds, mut size, mut kind) = (None, None, None, None, None);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} wants a value"));
        match a.as_str() {
            "-i" => ifname = Some(val()?),
            "--dst-mac" => dst = Some(val()?.parse().map_err(|_| "--dst-mac: not a MAC")?),
            "--seconds" => seconds = Some(val()?.parse::<f64>().map_err(|e| format!("--seconds: {e}"))?),
            "--size" => size = Some(val()?.parse::<usize>().map_err(|e| format!("--size: {e}"))?),
            "--dag" => kind = Some(Kind::Xip(Box::new(val()?.parse().map_err(|e| format!("--dag: {e}"))?))),
            "--ipv4" => {
                let v = val()?;
                let (s, d) = v.split_once(',').ok_or("--ipv4 wants SRC,DST")?;
                kind = Some(Kind::Ipv4(
                    s.parse().map_err(|e| format!("--ipv4: {e}"))?,
                    d.parse().map_err(|e| format!("--ipv4: {e}"))?,
                ));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("{other}: unknown argument\n{USAGE}")),
        }
    }
    Ok(Args {
        ifname: ifname.ok_or("-i is required")?,
        dst: dst.ok_or("--dst-mac is required")?,
        seconds: seconds.ok_or("--seconds is required")?,
        size,
        kind: kind.ok_or("--dag or --ipv4 is required")?,
    })
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 =
        b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn build(a: &Args, src: EthernetAddress) -> Result<Vec<u8>, String> {
    let (ethertype, mut l3) = match &a.kind {
        Kind::Xip(dag) => {
            let me = Dag::host(Xid::new(Principal::Ad, [0x5e; 20]), Xid::new(Principal::Hid, [0x5d; 20]))
                .map_err(|e| e.to_string())?;
            let hdr = XipRepr::new(NextHeader::Dgram, (**dag).clone(), me.clone(), 0).header_len();
            let payload = a.size.unwrap_or(0).saturating_sub(ethernet::HEADER_LEN + hdr);
            let x = XipRepr::new(NextHeader::Dgram, (**dag).clone(), me, payload);
            let mut b = vec![0u8; x.buffer_len()];
            x.emit(&mut b).map_err(|e| e.to_string())?;
            (EtherType::Xip, b)
        }
        Kind::Ipv4(s, d) => {
            let len = a.size.unwrap_or(60).saturating_sub(ethernet::HEADER_LEN).max(28);
            let mut b = vec![0u8; len];
            b[0] = 0x45;
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            b[8] = 64;
            b[9] = 17;
            b[12..16].copy_from_slice(&s.octets());
            b[16..20].copy_from_slice(&d.octets());
            let c = checksum(&b[..20]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
            b[20..22].copy_from_slice(&9u16.to_be_bytes());
            b[22..24].copy_from_slice(&9u16.to_be_bytes());
            b[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
            (EtherType::Ipv4, b)
        }
    };
    let mut f = vec![0u8; ethernet::HEADER_LEN];
    EthernetRepr { src, dst: a.dst, ethertype }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
        .map_err(|e| e.to_string())?;
    f.append(&mut l3);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    Ok(f)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xia-pktgen: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = LinkOptions { ethertypes: vec![], qdisc_bypass: true, ..LinkOptions::default() };
    let mut sock = match PacketSocket::open(&args.ifname, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xia-pktgen: {}: {e}", args.ifname);
            return ExitCode::FAILURE;
        }
    };
    let f = match build(&args, sock.mac()) {
        Ok(f) if f.len() <= sock.max_frame() => f,
        Ok(f) => {
            eprintln!("xia-pktgen: a {}-byte frame exceeds the MTU", f.len());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("xia-pktgen: {e}");
            return ExitCode::from(2);
        }
    };
    let batch: Vec<&[u8]> = vec![&f[..]; 64];
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(args.seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        match sock.send_batch(&batch) {
            Ok(0) => {
                // The socket buffer is full: wait until it drains a little.
                let mut p = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&sock),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 10) };
            }
            Ok(n) => sent += n as u64,
            Err(e) => {
                eprintln!("xia-pktgen: send: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // Frames the device refused (a full queue) were consumed but not sent.
    let st = sock.stats();
    let sent = sent.min(st.tx_frames);
    println!(
        "sent {sent} frames of {} bytes in {secs:.3} s: {:.0} pps (dropped by the device: {})",
        f.len(),
        sent as f64 / secs,
        st.tx_dropped
    );
    ExitCode::SUCCESS
}
