//! Writes the sample frames of `xia_core::samples`: as a pcap (`--pcap FILE`) and as fuzz seeds,
//! one directory per fuzz target (`--seeds DIR`).
//!
//! `cargo run -p xia-core --example samples -- --pcap samples.pcap`

use std::fs;
use std::path::{Path, PathBuf};

use xia_core::pcap::PcapWriter;
use xia_core::samples::samples;
use xia_core::wire::ethernet::HEADER_LEN;
use xia_core::wire::xip::NextHeader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut pcap, mut seeds): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pcap" => pcap = args.next().map(PathBuf::from),
            "--seeds" => seeds = args.next().map(PathBuf::from),
            _ => return Err(format!("usage: samples [--pcap FILE] [--seeds DIR] (got `{a}`)").into()),
        }
    }
    let all = samples();
    if let Some(path) = pcap {
        let mut w = PcapWriter::new(fs::File::create(&path)?)?;
        for s in &all {
            w.write_frame(&s.frame)?;
        }
        w.into_inner()?;
        eprintln!("wrote {} frames to {}", all.len(), path.display());
    }
    if let Some(dir) = seeds {
        let put = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
            let d = dir.join(target);
            fs::create_dir_all(&d)?;
            fs::write(Path::new(&d).join(name), bytes)
        };
        for s in &all {
            let xip = &s.frame[HEADER_LEN..];
            let transport = &xip[s.xip.header_len()..];
            put("frame", s.name, &s.frame)?;
            // The router target reads a port number, then the frame.
            for port in 0..3u8 {
                let mut r = vec![port];
                r.extend_from_slice(&s.frame);
                put("router", &format!("{}-{port}", s.name), &r)?;
            }
            put("xip", s.name, xip)?;
            let target = match s.xip.next_header {
                NextHeader::Xcmp => "xcmp",
                NextHeader::Dgram => "dgram",
                NextHeader::Stream => "stream",
                NextHeader::Chunk => "chunk",
                _ => continue,
            };
            put(target, s.name, transport)?;
            if s.name.starts_with("control") {
                put("control", s.name, &transport[4..])?;
            }
            put("dag_text", &format!("{}-re", s.name), s.xip.dst.to_string().as_bytes())?;
            put("dag_text", &format!("{}-dag", s.name), s.xip.dst.to_dag_string().as_bytes())?;
        }
        put("key_file", "key", xia_core::Keypair::from_seed([7; 32]).to_file_text().as_bytes())?;
        // Name service: a registration, a resolution and its answer, an error.
        {
            use xia_core::wire::names::{Name, NsBody, NsErrorCode, NsMessage, Record};
            let k = xia_core::Keypair::from_seed([10; 32]);
            let dag = xia_core::dag::Dag::host(
                xia_core::Xid::new(xia_core::Principal::Ad, [1; 20]),
                k.xid(xia_core::Principal::Hid),
            )?;
            let name: Name = "vm1.xia".parse()?;
            let r = Record::signed(&k, name.clone(), Some(dag), 1, 60_000);
            for (n, body) in [
                ("ns-put", NsBody::Put(Box::new(r.clone()))),
                ("ns-resolve", NsBody::Resolve(name)),
                ("ns-records", NsBody::Records(vec![r])),
                ("ns-error", NsBody::Error { code: NsErrorCode::Stale, text: "replayed".into() }),
            ] {
                put("names", n, &NsMessage { id: 1, body }.to_bytes()?)?;
            }
        }
        // XARP: a request, and a reply whose binding verifies.
        {
            use xia_core::wire::ethernet::EthernetAddress;
            use xia_core::wire::xarp::{Binding, XarpRepr};
            let (ka, kb) = (xia_core::Keypair::from_seed([8; 32]), xia_core::Keypair::from_seed([9; 32]));
            let (a, b) = (ka.xid(xia_core::Principal::Hid), kb.xid(xia_core::Principal::Hid));
            let (ma, mb) = (EthernetAddress([2, 0, 0, 0, 0, 0xa]), EthernetAddress([2, 0, 0, 0, 0, 0xb]));
            let req = XarpRepr::Request { sender: a, sender_mac: ma, target: b };
            let binding = Binding::sign(&kb, mb, 1_700_000_000_000);
            let reply = XarpRepr::Reply { sender: b, sender_mac: mb, target: a, target_mac: ma, binding };
            for (name, m) in [("xarp-request", req), ("xarp-reply", reply)] {
                let mut buf = vec![0u8; m.buffer_len()];
                m.emit(&mut buf)?;
                put("xarp", name, &buf)?;
            }
        }
        eprintln!("wrote fuzz seeds under {}", dir.display());
    }
    Ok(())
}
