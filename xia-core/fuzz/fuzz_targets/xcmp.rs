//! XCMP: parse, and what parses must re-emit to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::xcmp;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = xcmp::Packet::new_checked(data) else { return };
    let Ok(repr) = xcmp::XcmpRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("a parsed message re-emits");
    assert_eq!(out, data);
    let _ = xcmp::XcmpRepr::quote(data);
});
