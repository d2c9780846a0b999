//! XCMP: parse, and what parses must re-emit to the same bytes (checksum up to its two zeros).
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::xcmp;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = xcmp::Packet::new_checked(data) else { return };
    let Ok(repr) = xcmp::XcmpRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("a parsed message re-emits");
    // One's-complement arithmetic has two zeros: a checksum field of 0xffff and one of 0x0000
    // both verify, and emit writes the canonical one. Everything else is the same bytes.
    assert_eq!(out[..2], data[..2]);
    assert_eq!(out[4..], data[4..]);
    assert!(xcmp::Packet::new_checked(&out[..]).unwrap().verify_checksum());
    let _ = xcmp::XcmpRepr::quote(data);
});
