//! Signed control messages: hostile input through `open` (parse and verify, both signatures of
//! a co-signed beacon or distance vector), `inspect` and `peek_kind`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::control::{inspect, open, peek_kind};

fuzz_target!(|data: &[u8]| {
    let opened = open(data);
    let kind = peek_kind(data);
    if let Ok((body, _key)) = inspect(data) {
        let _ = (body.signer(), body.cosigner(), body.stamp().seq_in_bounds(u64::MAX));
        assert_eq!(body.buffer_len(), data.len());
        assert!(kind.is_some(), "what parses has a kind");
        // What verifies reads the same whichever way it is read.
        if let Ok(b) = &opened {
            assert_eq!(*b, body);
        }
    } else {
        // Nothing malformed ever verifies.
        assert!(opened.is_err());
    }
});
