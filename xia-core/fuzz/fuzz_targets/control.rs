//! Signed control messages: parse and verify hostile input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::control::Control;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Control::parse(data) else { return };
    // Random bytes never carry a valid signature by a key owning the signer XID.
    assert!(c.verify().is_err());
    let _ = c.body.signer();
    assert_eq!(c.body.buffer_len(), data.len());
});
