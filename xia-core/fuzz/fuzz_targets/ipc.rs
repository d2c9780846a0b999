//! Application-to-daemon frames: whatever an application sends, xiad's parsing neither panics nor
//! allocates beyond the frame, and what decodes encodes back to a frame that decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::ipc::codec::{self, Prefix, HELLO_LEN, PREFIX_LEN};
use xia_core::ipc::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.get(..HELLO_LEN) {
        let _ = codec::check_hello(h.try_into().expect("8 bytes"));
    }
    if let Ok(Some(p)) = Prefix::parse(data) {
        assert!(p.frame_len() <= PREFIX_LEN + codec::MAX_HEAD + codec::MAX_PAYLOAD);
    }
    if let Ok(r) = codec::decode::<Request>(data) {
        let again = codec::encode(&r, &[]);
        assert_eq!(codec::decode::<Request>(&again[PREFIX_LEN..]).ok(), Some(r));
    }
    if let Ok(r) = codec::decode::<Response>(data) {
        let again = codec::encode(&r, &[]);
        assert_eq!(codec::decode::<Response>(&again[PREFIX_LEN..]).ok(), Some(r));
    }
});
