//! Neighbours on the link: XARP requests (only answers to our own questions, signed by the
//! HID's key, are believed), answers for our HID, and frames waiting for a MAC.

use std::collections::VecDeque;
use std::time::Instant;

use crate::node::xarp_frame;
use crate::wire::ethernet::EthernetAddress;
use crate::wire::xarp::XarpRepr;
use crate::xid::Xid;

use super::*;

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) frames: VecDeque<Vec<u8>>,
    /// Content to serve to the neighbour once its MAC is known (its first requests arrive
    /// before we know where it is, as IP packets do before ARP).
    pub(super) serve: Vec<ServeTask>,
    pub(super) asked_at: Instant,
    pub(super) tries: u32,
}

impl Pending {
    pub(super) fn new(now: Instant, tries: u32) -> Pending {
        Pending { frames: VecDeque::new(), serve: Vec::new(), asked_at: now, tries }
    }

    pub(super) fn queued(&self) -> usize {
        self.frames.len() + self.serve.len()
    }
}

/// Neighbours remembered at most (a link with more hosts resolves the rest again).
pub(super) const MAX_NEIGHBOURS: usize = 4096;

impl Host {
    pub(super) fn await_resolution(&mut self, now: Instant, hid: Xid, frame: Vec<u8>) {
        let limit = self.cfg.resolve_queue;
        let p = self.pending.entry(*hid.id()).or_insert_with(|| Pending::new(now, 0));
        if p.queued() >= limit {
            self.stats.drop_queue_full += 1;
            return;
        }
        p.frames.push_back(frame);
        if p.tries == 0 {
            p.tries = 1;
            p.asked_at = now;
            self.send_xarp_request(now, hid);
        }
    }

    /// Asks who has `target`, and remembers that we asked: only answers to our own questions
    /// are believed.
    pub(super) fn send_xarp_request(&mut self, now: Instant, target: Xid) {
        self.pending.entry(*target.id()).or_insert_with(|| Pending::new(now, 1));
        let req = XarpRepr::Request { sender: self.hid, sender_mac: self.mac, target };
        self.out.push_back(xarp_frame(self.mac, EthernetAddress::BROADCAST, &req));
    }

    pub(super) fn learn_neighbour(&mut self, now: Instant, hid: Xid, mac: EthernetAddress) {
        let ttl = self.cfg.neighbour_ttl;
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(hid.id()) {
            self.neighbours.retain(|_, (_, until)| *until > now);
            if self.neighbours.len() >= MAX_NEIGHBOURS {
                self.stats.drop_queue_full += 1;
                return;
            }
        }
        let known = self.neighbours.insert(*hid.id(), (mac, now + ttl));
        if known.map(|k| k.0) != Some(mac) {
            self.route_gen += 1;
        }
        if let Some(p) = self.pending.remove(hid.id()) {
            for mut f in p.frames {
                f[..6].copy_from_slice(&mac.0);
                self.out.push_back(f);
            }
            for mut t in p.serve {
                t.header[..6].copy_from_slice(&mac.0);
                self.serving.push_back(t);
            }
        }
    }

    pub(super) fn handle_xarp(&mut self, now: Instant, payload: &[u8]) {
        match XarpRepr::parse(payload) {
            Ok(XarpRepr::Request { sender, sender_mac, target }) => {
                if target != self.hid {
                    return;
                }
                // Answering costs a signature now and then; a flood of questions gets a bounded
                // number of answers.
                if !self.xarp_budget.take(now) {
                    self.stats.drop_queue_full += 1;
                    return;
                }
                let wall = self.wall_ms(now);
                let reply = self.xarp.reply(&self.key, self.hid, self.mac, wall, sender, sender_mac);
                self.out.push_back(reply);
            }
            Ok(XarpRepr::Reply { sender, sender_mac, target, binding, .. }) => {
                // Only signed answers to our own questions, recent enough, teach us anything:
                // nobody can claim another host's HID.
                let window = self.cfg.control_window.as_millis() as u64;
                let fresh = self.wall_ms(now).abs_diff(binding.timestamp_ms) <= window;
                let asked = target == self.hid && self.pending.contains_key(sender.id());
                if asked && fresh && binding.verify(&sender, &sender_mac) {
                    self.learn_neighbour(now, sender, sender_mac);
                } else {
                    self.stats.drop_bad_control += 1;
                }
            }
            Err(_) => self.stats.drop_malformed += 1,
        }
    }
}
