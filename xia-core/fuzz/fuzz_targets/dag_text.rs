//! DAG text forms (`RE ...`, `DAG ...`) and XIDs: what parses prints and parses back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::{Dag, Xid};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(x) = s.parse::<Xid>() {
        assert_eq!(x.to_string().parse::<Xid>().unwrap(), x);
    }
    let Ok(d) = s.parse::<Dag>() else { return };
    assert_eq!(d.to_dag_string().parse::<Dag>().unwrap(), d);
    assert_eq!(d.to_string().parse::<Dag>().unwrap(), d);
});
