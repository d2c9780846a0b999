//! XIP header: parse, and what parses must re-emit to the same bytes; the in-place check of
//! receive paths (`Packet::validate`) accepts exactly what the full parse accepts. The
//! integrity check never panics on any bytes, and a packet it can seal then passes it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::select::{select, Lookup};
use xia_core::wire::{integrity, xip};

fuzz_target!(|data: &[u8]| {
    let _ = integrity::verify(data);
    let mut sealed = data.to_vec();
    if integrity::seal(&mut sealed) {
        assert_eq!(integrity::verify(&sealed), Ok(integrity::Checked::Good));
    }
    let Ok(p) = xip::Packet::new_checked(data) else { return };
    let parsed = xip::XipRepr::parse(&p);
    assert_eq!(p.validate().is_ok(), parsed.is_ok(), "validate and parse disagree: {parsed:?}");
    let Ok(repr) = parsed else { return };
    let out = repr.to_bytes(p.payload()).expect("a parsed header re-emits");
    assert_eq!(out, data);
    // Selection on a valid DAG never reports a malformed DAG.
    let mut dst = repr.dst.clone();
    let mut last = repr.last_node;
    let r = select(&mut dst, &mut last, |x| match x.id()[0] % 3 {
        0 => Lookup::Local,
        1 => Lookup::NextHop(()),
        _ => Lookup::Miss,
    });
    assert!(r.is_ok(), "{r:?}");
});
