//! Application-to-daemon messages: hostile applications cannot crash xiad; what decodes
//! encodes back to the same frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::ipc::Msg;

fuzz_target!(|data: &[u8]| {
    let _ = Msg::frame_len(data);
    let Ok(m) = Msg::decode(data) else { return };
    let f = m.encode();
    assert_eq!(&f[4..], data);
});
