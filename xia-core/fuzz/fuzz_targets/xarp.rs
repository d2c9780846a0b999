//! XARP messages: parse, and what parses re-emits to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::xarp::{XarpRepr, LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = XarpRepr::parse(data) else { return };
    let mut out = [0u8; LEN];
    r.emit(&mut out).unwrap();
    // Requests carry no target MAC: those bytes are written as zero.
    if let XarpRepr::Request { .. } = r {
        assert_eq!(out[..LEN - 6], data[..LEN - 6]);
    } else {
        assert_eq!(out[..], data[..LEN]);
    }
});
