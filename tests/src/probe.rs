//! What the end-to-end tests use to probe a running testbed: `xping` from a host, raw frames
//! on a link (to inject what no tool would send, and to watch), the wall clock, a process's
//! memory, and waiting on a condition.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xia_core::dag::Dag;
use xia_core::link::afpacket::{LinkOptions, PacketSocket, RecvBatch};
use xia_core::samples::frame;
use xia_core::wire::dgram::DgramRepr;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::wire::xip::{NextHeader, XipRepr};

use crate::{bin, Netns, Xiad};

/// `xping` from host `from` (in `ns`) with `args`, to `dst` (`RE ...` words, see
/// [`crate::re_words`]).
pub fn xping(ns: &Netns, from: &Xiad, args: &[&str], dst: &[String]) -> std::process::Command {
    let mut c = ns.cmd(bin("xping"));
    c.arg("--socket").arg(&from.socket).args(args).args(dst);
    c
}

/// Replies counted in xping's summary ("N packets transmitted, M received, ...") in `text`.
pub fn pings_received(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    line.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

/// The MAC of `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> EthernetAddress {
    ns.run(&["cat", &format!("/sys/class/net/{ifname}/address")]).unwrap().trim().parse().unwrap()
}

/// A raw socket on `ifname` in `ns` that sees every frame.
pub fn raw(ns: &Netns, ifname: &str) -> PacketSocket {
    let name = ifname.to_string();
    ns.enter(move || PacketSocket::open(&name, &LinkOptions { ethertypes: vec![], ..LinkOptions::default() }))
        .unwrap()
        .unwrap()
}

/// Sends `payload` as a DGRAM from `src` to `dst` in a frame to `to` out of `sock`.
pub fn send_dgram(
    sock: &mut PacketSocket,
    to: EthernetAddress,
    dst: &Dag,
    src: &Dag,
    payload: &[u8],
) -> io::Result<()> {
    let d = DgramRepr { payload };
    let mut dg = vec![0u8; d.buffer_len()];
    d.emit(&mut dg).map_err(|e| io::Error::other(e.to_string()))?;
    let x = XipRepr::new(NextHeader::Dgram, dst.clone(), src.clone(), dg.len());
    sock.send(&frame(sock.mac(), to, &x, &dg))?;
    Ok(())
}

/// Waits for a frame on `sock` that `want` accepts.
pub fn await_frame(sock: &mut PacketSocket, timeout: Duration, mut want: impl FnMut(&[u8]) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut batch = RecvBatch::new(16, sock.max_frame());
    while Instant::now() < deadline {
        let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms.max(1)) };
        if sock.recv_batch(&mut batch).unwrap_or(0) > 0 && batch.frames().any(&mut want) {
            return true;
        }
    }
    false
}

/// The wall clock, ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Resident memory of a process, from /proc (kB).
pub fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; how long it took.
pub fn within(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if cond() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
