//! DGRAM header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::dgram;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = dgram::Packet::new_checked(data) else { return };
    let Ok(repr) = dgram::DgramRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).unwrap();
    assert_eq!(out, data, "what parses re-emits to the same bytes");
});
