//! XCMP at a host: echo requests answered, pings sent and their replies and errors routed to
//! their owners, destination unreachable reported for what no socket takes.

use std::time::Instant;

use crate::dag::Dag;
use crate::node::echo_reply;
use crate::wire::xcmp::{self, Unreachable, XcmpRepr};
use crate::wire::xip::{self, NextHeader, XipRepr};

use super::*;

impl Host {
    pub(super) fn handle_xcmp(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(m) = xcmp::Packet::new_checked(payload).and_then(|p| XcmpRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        match m {
            XcmpRepr::EchoRequest { ident, seq, data } => {
                if let Some(buf) = echo_reply(ident, seq, data) {
                    let src = self.dag();
                    if self.send_packet(now, NextHeader::Xcmp, &x.src, &src, &buf) {
                        self.stats.echo_replies += 1;
                    }
                }
            }
            XcmpRepr::EchoReply { ident, seq, data } => match self.ping_idents.get(&u64::from(ident)) {
                Some(&owner) => {
                    let mut from = x.src.clone();
                    from.clear_visited();
                    self.events.push_back(HostEvent::EchoReply { owner, seq, from, data: data.to_vec() })
                }
                None => self.stats.drop_no_socket += 1,
            },
            XcmpRepr::DstUnreachable { original, .. }
            | XcmpRepr::TimeExceeded { original, .. }
            | XcmpRepr::Redirect { original, .. } => {
                let (kind, code) = (xcmp::Message::from(payload[0]), payload[1]);
                self.handle_xcmp_error(x, kind, code, original);
            }
            XcmpRepr::Other { .. } => {}
        }
    }

    /// An XCMP error quoting one of our packets: tell whoever sent it.
    pub(super) fn handle_xcmp_error(&mut self, x: &XipRepr, kind: xcmp::Message, code: u8, original: &[u8]) {
        let q = xip::Packet::new_unchecked(original);
        if original.len() < xip::FIXED_HEADER_LEN || original.len() < q.header_len() {
            return;
        }
        let quoted_payload = &original[q.header_len()..];
        match q.next_header() {
            NextHeader::Xcmp if quoted_payload.len() >= 8 => {
                let ident = u16::from_be_bytes([quoted_payload[4], quoted_payload[5]]);
                let seq = u16::from_be_bytes([quoted_payload[6], quoted_payload[7]]);
                if let Some(&owner) = self.ping_idents.get(&u64::from(ident)) {
                    let mut from = x.src.clone();
                    from.clear_visited();
                    self.events.push_back(HostEvent::EchoError { owner, seq, from, kind, code });
                }
            }
            NextHeader::Stream if kind == xcmp::Message::DstUnreachable => {
                let (Some(dst), Some(src)) = (q.dst_intent(), q.src_intent()) else { return };
                if let Some(&h) = self.stream_index.get(&(*src.id(), *dst.id())) {
                    if let Some(s) = self.streams.get_mut(&h) {
                        s.conn.handle_unreachable();
                    }
                    self.drain_stream_events(h);
                }
            }
            _ => {}
        }
    }

    /// XCMP destination unreachable back to the sender of `x`, quoting it.
    pub(super) fn send_unreachable(
        &mut self,
        now: Instant,
        x: &XipRepr,
        reason: Unreachable,
        payload: &[u8],
    ) {
        // The original header as it arrived (its payload length included), then 8 bytes.
        let mut quoted = x.clone();
        quoted.payload_len = payload.len();
        let head = payload.len().min(xcmp::QUOTED_PAYLOAD);
        let mut original = vec![0u8; quoted.header_len() + head];
        if quoted.emit(&mut original).is_err() {
            return;
        }
        original[quoted.header_len()..].copy_from_slice(&payload[..head]);
        let m = XcmpRepr::DstUnreachable { reason, original: &original };
        let mut buf = vec![0u8; m.buffer_len()];
        if m.emit(&mut buf).is_ok() {
            let src = self.dag();
            self.send_packet(now, NextHeader::Xcmp, &x.src, &src, &buf);
        }
    }

    /// Starts a ping: returns its handle (XCMP echo identifier chosen here).
    pub fn ping_open(&mut self) -> Handle {
        let h = self.handle();
        let mut ident = self.rng.next_u64() as u16;
        while self.ping_idents.contains_key(&u64::from(ident)) {
            ident = ident.wrapping_add(1);
        }
        self.pings.insert(h, ident);
        self.ping_idents.insert(u64::from(ident), h);
        h
    }

    /// Sends an XCMP echo request for ping `h`.
    pub fn ping_send(
        &mut self,
        now: Instant,
        h: Handle,
        dst: &Dag,
        seq: u16,
        data: &[u8],
    ) -> Result<(), HostError> {
        let ident = *self.pings.get(&h).ok_or(HostError::BadHandle)?;
        let req = XcmpRepr::EchoRequest { ident, seq, data };
        let max = self
            .cfg
            .mtu
            .saturating_sub(xip::FIXED_HEADER_LEN + xip::NODE_LEN * (dst.len() + 2) + xcmp::HEADER_LEN);
        if data.len() > max {
            return Err(HostError::TooLarge { len: data.len(), max });
        }
        let mut buf = vec![0u8; req.buffer_len()];
        req.emit(&mut buf).map_err(|_| HostError::TooLarge { len: data.len(), max })?;
        let src = self.dag();
        if self.send_packet(now, NextHeader::Xcmp, dst, &src, &buf) {
            Ok(())
        } else {
            Err(HostError::Unreachable)
        }
    }
}
