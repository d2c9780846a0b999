//! What the router answers others, within one budget (`RouterConfig::xcmp_rate`): XCMP echo
//! replies, XCMP unreachable and time exceeded back to the source of a packet it could not
//! forward, and signed XARP replies to hosts asking for its HID.

use std::time::Instant;

use xia_core::node::echo_reply;
use xia_core::wire::xarp::XarpRepr;
use xia_core::wire::xcmp::{self, Message, Unreachable, XcmpRepr};
use xia_core::wire::xip::{self, NextHeader, XipRepr};

use super::Router;

impl Router {
    /// Answers "who has the router's HID" (hosts on a link without beacons ask).
    pub(super) fn handle_xarp(&mut self, now: Instant, port: usize, payload: &[u8]) {
        let Ok(XarpRepr::Request { sender, sender_mac, target }) = XarpRepr::parse(payload) else {
            self.stats.drop_local += 1;
            return;
        };
        if target != self.hid {
            return;
        }
        if !self.xcmp_budget.take(now) {
            self.stats.xcmp_rate_limited += 1;
            return;
        }
        let wall = self.wall_ms(now);
        let f = self.xarp.reply(&self.key, self.hid, self.ports[port].mac, wall, sender, sender_mac);
        self.push_out(port, f);
    }

    /// Tells the source of `packet` (an XIP packet that could not be forwarded) why, quoting
    /// it; never about an XCMP error, and within the budget.
    pub(super) fn send_xcmp_error(&mut self, now: Instant, packet: &[u8], kind: XcmpKind) {
        let p = xip::Packet::new_unchecked(packet);
        // Never an error about an error (nor about a packet whose source cannot be read).
        if p.validate().is_err() {
            return;
        }
        if p.next_header() == NextHeader::Xcmp {
            let payload = p.payload();
            let kind = payload.first().map(|&t| Message::from(t));
            if !matches!(kind, Some(Message::EchoReply | Message::EchoRequest)) {
                return;
            }
        }
        let Ok(src) = p.src_dag() else { return };
        if !self.xcmp_budget.take(now) {
            self.stats.xcmp_rate_limited += 1;
            return;
        }
        // As much of the packet as a frame of the smallest port holds (a large DAG's header
        // alone can be more).
        let mtu = self.ports.iter().map(|p| p.mtu).min().unwrap_or(0);
        let empty = match kind {
            XcmpKind::Unreachable(reason) => XcmpRepr::DstUnreachable { reason, original: &[] },
            XcmpKind::TimeExceeded => XcmpRepr::TimeExceeded { code: 0, original: &[] },
        };
        let head =
            XipRepr::new(NextHeader::Xcmp, src.clone(), self.dag(), 0).header_len() + empty.buffer_len();
        let quoted = xcmp::XcmpRepr::quote(packet);
        let original = &quoted[..quoted.len().min(mtu.saturating_sub(head))];
        let m = match kind {
            XcmpKind::Unreachable(reason) => XcmpRepr::DstUnreachable { reason, original },
            XcmpKind::TimeExceeded => XcmpRepr::TimeExceeded { code: 0, original },
        };
        let mut buf = vec![0u8; m.buffer_len()];
        if m.emit(&mut buf).is_ok() && self.originate(NextHeader::Xcmp, &src, &buf) {
            self.stats.xcmp_sent += 1;
        }
    }

    /// An XCMP message for this router: echo requests are answered (within the budget), the
    /// rest is of no use to it.
    pub(super) fn handle_xcmp(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(m) = xcmp::Packet::new_checked(payload).and_then(|q| XcmpRepr::parse(&q)) else {
            self.stats.drop_local += 1;
            return;
        };
        if let XcmpRepr::EchoRequest { ident, seq, data } = m {
            let reply = echo_reply(ident, seq, data);
            if let Some(buf) = reply.filter(|_| self.xcmp_budget.take(now)) {
                let mut to = x.src.clone();
                to.clear_visited();
                if self.originate(NextHeader::Xcmp, &to, &buf) {
                    self.stats.xcmp_sent += 1;
                }
            }
        } else {
            self.stats.drop_local += 1;
        }
    }
}

/// The XCMP errors the router sends.
#[derive(Debug, Clone, Copy)]
pub(super) enum XcmpKind {
    Unreachable(Unreachable),
    TimeExceeded,
}
