//! The router's whole receive path: a frame of any content on any port of a router with routes
//! of every kind, a chunk cache and neighbours. Nothing may panic, and the router's own output
//! stays bounded.
#![no_main]
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xia_core::keys::Keypair;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid};
use xia_router::router::{Action, PortInfo, Router, RouterConfig, Target};

struct State {
    router: Router,
    now: Instant,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn router() -> State {
    let now = Instant::now();
    let ports = (0..3u8)
        .map(|p| PortInfo { name: format!("p{p}"), mac: EthernetAddress([2, 0, 0, 0, 0, p]), mtu: 1500 })
        .collect();
    let cfg = RouterConfig { cache_bytes: 4 << 20, assembly_bytes: 8 << 20, ..RouterConfig::default() };
    let mut router =
        Router::new(cfg, Keypair::from_seed([0xa1; 32]), Keypair::from_seed([0xb1; 32]), ports, now, 1_800_000_000_000);
    let via = |port: usize| Target::Via { port, mac: EthernetAddress([2, 0, 0, 0, 9, port as u8]) };
    for (i, p) in [Principal::Ad, Principal::Hid, Principal::Sid, Principal::Cid, Principal::Ip].into_iter().enumerate() {
        let _ = router.add_route(p, Some(Xid::new(p, [i as u8 + 1; 20])), via(i % 3));
        let _ = router.add_route(p, None, if i % 2 == 0 { Target::Fallback } else { via(2) });
    }
    let _ = router.add_route(Principal::Hid, Some(Xid::new(Principal::Hid, [0x77; 20])), Target::FollowAd(Xid::new(Principal::Ad, [1; 20])));
    State { router, now }
}

fuzz_target!(|data: &[u8]| {
    let Some((&port, frame)) = data.split_first() else { return };
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let state = guard.get_or_insert_with(router);
    state.now += Duration::from_micros(100);
    let mut f = frame.to_vec();
    let len = f.len();
    match state.router.handle_frame(state.now, usize::from(port % 4), &mut f) {
        Action::Forward(out) => assert!(out < 3 && f.len() == len),
        Action::Done => {}
    }
    if state.router.poll_timeout() <= state.now {
        state.router.handle_timeout(state.now);
    }
    let mut n = 0;
    while state.router.poll_transmit().is_some() {
        n += 1;
        assert!(n < 100_000, "the router's own output is bounded");
    }
});
