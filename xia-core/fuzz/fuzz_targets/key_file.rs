//! Key files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::Keypair;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(k) = Keypair::from_file_text(s) {
        let again = Keypair::from_file_text(&k.to_file_text()).unwrap();
        assert_eq!(again.public(), k.public());
    }
});
