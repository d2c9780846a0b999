//! CHUNK header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::chunk;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = chunk::Packet::new_checked(data) else { return };
    let Ok(repr) = chunk::ChunkRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("a parsed packet re-emits");
    assert_eq!(out, data, "what parses re-emits to the same bytes");
});
