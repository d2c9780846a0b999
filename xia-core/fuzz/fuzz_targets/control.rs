//! Signed control messages: hostile input through `open` (parse and verify) and `inspect`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::control::{inspect, open};

fuzz_target!(|data: &[u8]| {
    // Random bytes never carry valid signatures by keys owning the signer XIDs.
    assert!(open(data).is_err());
    if let Ok((body, _key)) = inspect(data) {
        let _ = body.signer();
        assert_eq!(body.buffer_len(), data.len());
    }
});
