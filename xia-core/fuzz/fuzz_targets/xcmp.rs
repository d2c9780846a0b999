//! XCMP: parse, and what parses must re-emit to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::xcmp;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = xcmp::Packet::new_checked(data) else { return };
    let Ok(repr) = xcmp::XcmpRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("a parsed message re-emits");
    // Error messages are emitted with zeroed rest-of-header bytes; compare the meaning.
    let again = xcmp::XcmpRepr::parse(&xcmp::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
    let _ = xcmp::XcmpRepr::quote(data);
});
