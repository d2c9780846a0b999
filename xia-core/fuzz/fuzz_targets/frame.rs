//! An Ethernet frame as a router's receive path sees it: Ethernet, then XIP, then selection.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xia_core::select::{select, Lookup};
use xia_core::wire::{ethernet, xip};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = ethernet::Frame::new_checked(data) else { return };
    let _ = ethernet::EthernetRepr::parse(&frame);
    if frame.ethertype() != ethernet::EtherType::Xip {
        return;
    }
    let mut buf = frame.payload().to_vec();
    let Ok(mut p) = xip::Packet::new_checked(&mut buf[..]) else { return };
    let _ = xip::XipRepr::parse(&p);
    // Selection runs on unvalidated bytes in routers: it must check what it follows.
    let (mut nodes, last) = p.dst_nodes_mut();
    let _ = select(&mut nodes, last, |x| match x.id()[0] % 4 {
        0 => Lookup::Local,
        1 => Lookup::NextHop(x.id()[1]),
        2 => Lookup::Fallback,
        _ => Lookup::Miss,
    });
});
