//! CHUNK header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::chunk;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = chunk::Packet::new_checked(data) else { return };
    let Ok(repr) = chunk::ChunkRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("a parsed packet re-emits");
    // The same bytes, but for the integrity check (emitted zero: it is sealed over the whole
    // packet, XIP header included, once that is written).
    let check = 16..chunk::HEADER_LEN;
    assert_eq!(out[..check.start], data[..check.start], "what parses re-emits to the same bytes");
    assert_eq!(out[check.end..], data[check.end..], "what parses re-emits to the same bytes");
    assert_eq!(out[check], [0; 4]);
});
