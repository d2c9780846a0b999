//! Signed control messages: hostile input through `open` (parse and verify) and `inspect`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::control::{inspect, open};

fuzz_target!(|data: &[u8]| {
    let opened = open(data);
    if let Ok((body, _key)) = inspect(data) {
        let _ = body.signer();
        assert_eq!(body.buffer_len(), data.len());
        // What verifies reads the same whichever way it is read.
        if let Ok(b) = &opened {
            assert_eq!(*b, body);
        }
    } else {
        // Nothing malformed ever verifies.
        assert!(opened.is_err());
    }
});
