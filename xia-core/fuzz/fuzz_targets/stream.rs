//! STREAM header and options.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::stream;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = stream::Packet::new_checked(data) else { return };
    let Ok(repr) = stream::StreamRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    // Options that parsed always fit again (unknown ones are dropped, never added).
    repr.emit(&mut out).expect("a parsed segment re-emits");
    let again = stream::StreamRepr::parse(&stream::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
});
