//! Name service messages: hostile input through `NsMessage::parse`, records through `verify`,
//! names through their grammar.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::wire::names::{Name, NsBody, NsMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(n) = s.parse::<Name>() {
            assert_eq!(n.as_str(), s.to_ascii_lowercase());
        }
    }
    let Ok(m) = NsMessage::parse(data) else { return };
    // What parses is written back to the same bytes.
    assert_eq!(m.to_bytes().expect("a parsed message re-emits"), data);
    match &m.body {
        NsBody::Put(r) => {
            let _ = r.verify();
        }
        NsBody::Records(rs) => rs.iter().for_each(|r| {
            let _ = r.verify();
        }),
        _ => {}
    }
});
