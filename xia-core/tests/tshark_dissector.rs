//! Wireshark's `xip` dissector as an independent oracle for the XIP header: frames built by
//! xia-core are written to a pcap, decoded by `tshark`, and every header field and DAG entry
//! must read back as built, with none of the dissector's length/node-count errors.
//!
//! Needs `tshark` (Debian package `tshark`); the README's test command installs it. Under
//! `CI=true` a missing tshark fails the test instead of skipping it.

use std::path::PathBuf;
use std::process::Command;

use xia_core::dag::{Dag, EDGE_EMPTY, EDGE_INDEX, EDGE_VISITED};
use xia_core::pcap::PcapWriter;
use xia_core::samples::samples;
use xia_core::wire::xip::NextHeader;
use xia_core::xid::Principal;

/// A temporary file removed on drop, even when the test fails.
struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tshark() -> Option<&'static str> {
    let found = Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false);
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is not installed; under CI=true this test must run (apt-get install tshark)");
    }
    found.then_some("tshark")
}

/// The DAG as Wireshark's `xia_ntop` prints it: `type-<hex>-<edges>` joined by `":\n"`, with
/// `!` in front (and every edge slot printed) when any edge carries the visited bit.
fn wireshark_dag(d: &Dag) -> String {
    let valid = d.nodes().iter().all(|n| n.edges.iter().all(|e| e & EDGE_VISITED == 0));
    let mut s = String::new();
    if !valid {
        s.push('!');
    }
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    for (i, n) in d.nodes().iter().enumerate() {
        if i > 0 {
            s.push_str(":\n");
        }
        match n.xid.principal() {
            Principal::Ad => s.push_str("ad"),
            Principal::Hid => s.push_str("hid"),
            Principal::Cid => s.push_str("cid"),
            Principal::Sid => s.push_str("sid"),
            Principal::Ip => s.push_str("uni4id"),
            other => s.push_str(&format!("0x{:x}", other.code())),
        }
        s.push('-');
        for b in n.xid.id() {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('-');
        for &e in &n.edges {
            if valid && e == EDGE_EMPTY {
                break;
            }
            if e & EDGE_VISITED != 0 {
                s.push('>');
            }
            let idx = e & EDGE_INDEX;
            s.push(if idx == EDGE_EMPTY { '*' } else { char::from(digits[usize::from(idx)]) });
        }
    }
    s
}

fn field<'a>(layers: &'a serde_json::Value, name: &str) -> &'a str {
    layers[name][0].as_str().unwrap_or_else(|| panic!("tshark gave no `{name}` in {layers}"))
}

#[test]
fn tshark_decodes_every_header_field_as_built() {
    let Some(tshark) = tshark() else {
        eprintln!("SKIPPED: tshark not installed");
        return;
    };
    let all = samples();
    // The acceptance set: a 3-node RE AD HID SID DAG, a DAG with a fallback, a CID DAG, and
    // every next header.
    assert!(all.iter().any(|s| s.xip.dst.len() == 3 && s.xip.dst.intent().principal() == Principal::Sid));
    assert!(all.iter().any(|s| s.xip.dst.entry_edges().count() > 1));
    assert!(all.iter().any(|s| s.xip.dst.intent().principal() == Principal::Cid));
    for nh in [NextHeader::Data, NextHeader::Xcmp, NextHeader::Dgram, NextHeader::Stream, NextHeader::Chunk] {
        assert!(all.iter().any(|s| s.xip.next_header == nh), "no sample with {nh:?}");
    }

    let file = TempFile(std::env::temp_dir().join(format!("xia-tshark-{}.pcap", std::process::id())));
    let mut w = PcapWriter::new(std::fs::File::create(&file.0).unwrap()).unwrap();
    for s in &all {
        w.write_frame(&s.frame).unwrap();
    }
    w.into_inner().unwrap();

    let fields = [
        "xip.version",
        "xip.next_hdr",
        "xip.payload_len",
        "xip.hop_limit",
        "xip.num_dst",
        "xip.num_src",
        "xip.last_node",
        "xip.dst_dag_entry",
        "xip.src_dag_entry",
    ];
    let mut cmd = Command::new(tshark);
    cmd.arg("-r").arg(&file.0).args(["-T", "json"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let packets: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let packets = packets.as_array().expect("a JSON array of packets");
    assert_eq!(packets.len(), all.len());

    for (s, p) in all.iter().zip(packets) {
        let l = &p["_source"]["layers"];
        let x = &s.xip;
        let ctx = s.name;
        assert_eq!(field(l, "xip.version"), "1", "{ctx}");
        assert_eq!(field(l, "xip.next_hdr"), u8::from(x.next_header).to_string(), "{ctx}");
        assert_eq!(field(l, "xip.payload_len"), x.payload_len.to_string(), "{ctx}");
        assert_eq!(field(l, "xip.hop_limit"), x.hop_limit.to_string(), "{ctx}");
        assert_eq!(field(l, "xip.num_dst"), x.dst.len().to_string(), "{ctx}");
        assert_eq!(field(l, "xip.num_src"), x.src.len().to_string(), "{ctx}");
        assert_eq!(field(l, "xip.last_node"), x.last_node.to_string(), "{ctx}");
        assert_eq!(field(l, "xip.dst_dag_entry"), wireshark_dag(&x.dst), "{ctx}");
        assert_eq!(field(l, "xip.src_dag_entry"), wireshark_dag(&x.src), "{ctx}");
    }
    // The forwarded frame carries a visited bit, which Wireshark flags with `!`: we set it
    // where the prototype does, and tshark sees it.
    assert!(all.iter().any(|s| wireshark_dag(&s.xip.dst).starts_with('!')));

    // None of the dissector's error items fires on any frame. (Its "unrecognized next header"
    // item is expected: Wireshark dissects only next header 0 further, and files that note under
    // the Malformed group, so that group is checked apart from it.)
    let errors = Command::new(tshark)
        .arg("-r")
        .arg(&file.0)
        .args([
            "-Y",
            "xip.invalid.len || xip.bad_num_dst || xip.bad_num_src || (_ws.malformed && !xip.next.header)",
        ])
        .output()
        .expect("tshark runs");
    assert!(errors.status.success());
    assert_eq!(String::from_utf8_lossy(&errors.stdout), "", "tshark flagged frames");
    // And the filter does work: a frame with a lying payload length trips it.
    let mut bad = all[0].frame.clone();
    bad.push(0);
    let bad_file = TempFile(std::env::temp_dir().join(format!("xia-tshark-bad-{}.pcap", std::process::id())));
    let mut w = PcapWriter::new(std::fs::File::create(&bad_file.0).unwrap()).unwrap();
    w.write_frame(&bad).unwrap();
    w.into_inner().unwrap();
    let flagged = Command::new(tshark)
        .arg("-r")
        .arg(&bad_file.0)
        .args(["-Y", "xip.invalid.len"])
        .output()
        .expect("tshark runs");
    assert_eq!(String::from_utf8_lossy(&flagged.stdout).lines().count(), 1);
}
