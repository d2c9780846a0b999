//! A simulated Ethernet segment in real time, for daemons running in one process: what a
//! frame sent by one port becomes is decided by the receiving port's [`SimLink`] (seeded loss,
//! duplication, reordering, delay, a line rate), and every other port receives it, as on a hub.
//! Daemons wait on each port's eventfd like on a socket; no root, no interface.
//!
//! ```
//! use xia_core::link::sim::SimConfig;
//! use xia_core::link::sim_wire::SimWire;
//! use xia_core::wire::ethernet::EthernetAddress;
//! let wire = SimWire::new();
//! let a = wire.port(EthernetAddress([2, 0, 0, 0, 0, 1]), 9000, SimConfig::default(), 1).unwrap();
//! let b = wire.port(EthernetAddress([2, 0, 0, 0, 0, 2]), 9000, SimConfig::impaired(0.1, 0.0, 0.0), 2).unwrap();
//! wire.set_up(false); // both ports see the link go down; nothing passes until it is up again
//! # let _ = (a, b);
//! ```

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::sim::{SimConfig, SimLink, SimStats};
use super::{Link, LinkState, LinkStats};
use crate::sys::EventFd;
use crate::wire::ethernet::{EthernetAddress, HEADER_LEN};

#[derive(Debug)]
struct PortState {
    /// What reaches this port: frames from the others, through its impairments.
    ingress: SimLink,
    /// Rung when frames or a state change await the port.
    wake: EventFd,
}

#[derive(Debug)]
struct Segment {
    ports: Vec<PortState>,
    up: bool,
    /// Bumped on every change of `up`.
    generation: u64,
}

/// A segment that ports attach to. Cloning it gives another handle on the same segment.
#[derive(Debug, Clone)]
pub struct SimWire {
    seg: Arc<Mutex<Segment>>,
}

impl Default for SimWire {
    fn default() -> Self {
        SimWire::new()
    }
}

fn lock(seg: &Mutex<Segment>) -> MutexGuard<'_, Segment> {
    // A daemon that panicked while holding the lock leaves the segment as it was: frames in
    // queues, nothing half-changed that matters.
    seg.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimWire {
    /// An empty segment, up.
    pub fn new() -> SimWire {
        SimWire { seg: Arc::new(Mutex::new(Segment { ports: Vec::new(), up: true, generation: 0 })) }
    }

    /// Attaches a port with MAC `mac` and MTU `mtu`, whose received frames go through
    /// `ingress` (impairments seeded by `seed`).
    pub fn port(
        &self,
        mac: EthernetAddress,
        mtu: usize,
        ingress: SimConfig,
        seed: u64,
    ) -> io::Result<SimPort> {
        let wake = EventFd::new()?;
        let mine = wake.try_clone()?;
        let mut seg = lock(&self.seg);
        seg.ports.push(PortState { ingress: SimLink::new(ingress, seed), wake });
        Ok(SimPort {
            seg: self.seg.clone(),
            index: seg.ports.len() - 1,
            mac,
            mtu,
            wake: mine,
            buf: vec![0u8; HEADER_LEN + mtu],
            due: Vec::new(),
            seen_generation: seg.generation,
            stats: LinkStats::default(),
        })
    }

    /// Takes the segment down (every frame is lost, as on a cut cable) or up again; every port
    /// sees the change.
    pub fn set_up(&self, up: bool) {
        let mut seg = lock(&self.seg);
        if seg.up != up {
            seg.up = up;
            seg.generation += 1;
            for p in &seg.ports {
                p.wake.wake();
            }
        }
    }

    /// Changes what port `index` (in attachment order) receives from now on: more loss, a
    /// black hole (`loss` 1.0), a clean link again. Frames already on their way arrive.
    pub fn set_ingress(&self, index: usize, cfg: SimConfig, seed: u64) {
        let mut seg = lock(&self.seg);
        if let Some(p) = seg.ports.get_mut(index) {
            let mut fresh = SimLink::new(cfg, seed);
            // Keep what is in flight.
            fresh.absorb(&mut p.ingress);
            p.ingress = fresh;
        }
    }

    /// What port `index`'s ingress did.
    pub fn ingress_stats(&self, index: usize) -> Option<SimStats> {
        lock(&self.seg).ports.get(index).map(|p| p.ingress.stats())
    }
}

/// A port on a [`SimWire`].
#[derive(Debug)]
pub struct SimPort {
    seg: Arc<Mutex<Segment>>,
    index: usize,
    mac: EthernetAddress,
    mtu: usize,
    wake: EventFd,
    buf: Vec<u8>,
    /// Frames taken off the segment, handed out after the lock is released.
    due: Vec<Vec<u8>>,
    seen_generation: u64,
    stats: LinkStats,
}

impl SimPort {
    /// The port's index on its wire (for [`SimWire::set_ingress`]).
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Link for SimPort {
    fn mac(&self) -> EthernetAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    fn poll_at(&self) -> Option<Instant> {
        lock(&self.seg).ports[self.index].ingress.next_delivery()
    }

    fn receive(&mut self, budget: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        self.wake.clear();
        {
            let mut seg = lock(&self.seg);
            let now = Instant::now();
            let port = &mut seg.ports[self.index];
            while self.due.len() < budget {
                let Some(frame) = port.ingress.poll_deliver(now) else { break };
                self.due.push(frame);
            }
        }
        let n = self.due.len();
        for frame in self.due.drain(..) {
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += frame.len() as u64;
            f(&frame);
        }
        Ok(n)
    }

    fn transmit(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        while let Some(n) = fill(&mut self.buf) {
            let frame = &self.buf[..n];
            let mut seg = lock(&self.seg);
            if !seg.up {
                // A frame onto a dead link: lost, as the device would refuse it.
                self.stats.tx_errors += 1;
                continue;
            }
            let now = Instant::now();
            for (i, p) in seg.ports.iter_mut().enumerate() {
                if i != self.index {
                    p.ingress.send(now, frame.to_vec());
                    p.wake.wake();
                }
            }
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += n as u64;
        }
        Ok(true)
    }

    fn poll_state(&mut self) -> Option<LinkState> {
        let seg = lock(&self.seg);
        if seg.generation == self.seen_generation {
            return None;
        }
        // Every change flips the state: the changes not yet reported end in the state now, so
        // the next one to report is that state if an odd number are left, its opposite if even.
        let left = seg.generation - self.seen_generation;
        self.seen_generation += 1;
        let up = if left % 2 == 1 { seg.up } else { !seg.up };
        Some(if up { LinkState::Up } else { LinkState::Down })
    }

    fn is_up(&self) -> bool {
        lock(&self.seg).up
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(dst: EthernetAddress, n: u8) -> Vec<u8> {
        let mut f = vec![n; 64];
        f[..6].copy_from_slice(&dst.0);
        f
    }

    #[test]
    fn frames_reach_every_other_port_after_the_delay_and_wake_them() {
        let wire = SimWire::new();
        let cfg = SimConfig { delay: Duration::from_millis(2), ..SimConfig::default() };
        let mut a = wire.port(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500, cfg.clone(), 1).unwrap();
        let mut b = wire.port(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500, cfg.clone(), 2).unwrap();
        let mut c = wire.port(EthernetAddress([2, 0, 0, 0, 0, 3]), 1500, cfg, 3).unwrap();
        let f = frame(b.mac(), 7);
        let mut once = Some(f.clone());
        assert!(a
            .transmit(&mut |buf| {
                let f = once.take()?;
                buf[..f.len()].copy_from_slice(&f);
                Some(f.len())
            })
            .unwrap());
        assert!(b.wake.clear(), "the receiver is woken");
        let mut got = Vec::new();
        assert_eq!(b.receive(10, &mut |x| got.push(x.to_vec())).unwrap(), 0, "not due yet");
        let due = b.poll_at().expect("a frame is on its way");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        assert_eq!(b.receive(10, &mut |x| got.push(x.to_vec())).unwrap(), 1);
        assert_eq!(got, vec![f.clone()]);
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(c.receive(10, &mut |_| {}).unwrap(), 1, "a hub: every other port");
        assert_eq!(a.receive(10, &mut |_| {}).unwrap(), 0, "not back to the sender");
        assert_eq!(a.stats().tx_frames, 1);
        assert_eq!(b.stats().rx_frames, 1);
    }

    #[test]
    fn a_downed_wire_loses_frames_and_every_port_hears_of_it() {
        let wire = SimWire::new();
        let cfg = SimConfig { delay: Duration::ZERO, ..SimConfig::default() };
        let mut a = wire.port(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500, cfg.clone(), 1).unwrap();
        let mut b = wire.port(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500, cfg, 2).unwrap();
        wire.set_up(false);
        assert_eq!(a.poll_state(), Some(LinkState::Down));
        assert_eq!(a.poll_state(), None);
        // A flap is two changes, in order.
        wire.set_up(true);
        wire.set_up(false);
        assert_eq!(a.poll_state(), Some(LinkState::Up));
        assert_eq!(a.poll_state(), Some(LinkState::Down));
        assert_eq!(a.poll_state(), None);
        assert!(!b.is_up());
        let mut n = 0;
        a.transmit(&mut |buf| {
            n += 1;
            (n <= 3).then_some(60).inspect(|_| buf[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]))
        })
        .unwrap();
        assert_eq!(a.stats().tx_errors, 3);
        assert_eq!(b.receive(10, &mut |_| {}).unwrap(), 0);
        wire.set_up(true);
        assert_eq!(b.poll_state(), Some(LinkState::Down));
        assert_eq!(b.poll_state(), Some(LinkState::Up));
        assert_eq!(b.poll_state(), Some(LinkState::Down));
        assert_eq!(b.poll_state(), Some(LinkState::Up));
        assert_eq!(b.poll_state(), None);
    }
}
