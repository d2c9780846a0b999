//! Segments in: the handshake's and RST's effects, sequence numbers unwrapped, the peer's
//! window, in-order and out-of-order data into the receive buffer, window updates.

use std::time::Instant;

use crate::wire::stream::{Flags, StreamRepr};

use super::*;

impl Stream {
    pub(super) fn peer_aseq(&self, seq: u32) -> u64 {
        unwrap32(seq.wrapping_sub(self.irs), self.rcv_nxt)
    }

    pub(super) fn our_aseq(&self, ack: u32) -> u64 {
        unwrap32(ack.wrapping_sub(self.iss), self.snd_una)
    }

    pub(super) fn now_ts(&self, now: Instant) -> u32 {
        // Microseconds since the connection began; never 0 (0 means "no echo").
        (now.duration_since(self.epoch).as_micros() as u32).max(1)
    }

    /// Processes one received segment (already demultiplexed to this connection).
    pub fn handle_segment(&mut self, now: Instant, seg: &StreamRepr<'_>) {
        self.stats.segments_received += 1;
        if self.closed.is_some() {
            // A retransmitted FIN during TIME_WAIT is acknowledged again.
            if self.time_wait_at.is_some() && seg.flags.contains(Flags::FIN) {
                self.ack_pending = true;
            }
            return;
        }
        self.last_recv = now;
        if self.keepalive_at.is_some() {
            self.arm_keepalive(now);
        }
        if seg.flags.contains(Flags::RST) {
            self.handle_rst(seg);
            return;
        }
        match self.handshake {
            Handshake::SynSent => {
                if !seg.flags.contains(Flags::SYN | Flags::ACK) || seg.ack != self.iss.wrapping_add(1) {
                    return;
                }
                self.irs = seg.seq;
                self.take_syn_options(seg);
                if let (Some(sent), 1) = (self.syn_sent_at, self.syn_xmits) {
                    self.rtt_sample(now, now.duration_since(sent));
                }
                self.ts_recent = seg.timestamps.map_or(0, |t| t.0);
                self.snd_una = 1;
                self.established(now);
                // Windows in SYN segments are never scaled.
                self.snd_wnd = u64::from(seg.window);
                self.snd_wl1 = 0;
                self.snd_wl2 = 1;
                self.ack_pending = true;
                return;
            }
            Handshake::SynReceived => {
                if seg.flags.contains(Flags::SYN) && !seg.flags.contains(Flags::ACK) {
                    // Our SYN-ACK was lost: send it again.
                    self.syn_sent_at = None;
                    return;
                }
                if !seg.flags.contains(Flags::ACK) || seg.ack != self.iss.wrapping_add(1) {
                    return;
                }
                if let (Some(sent), 1) = (self.syn_sent_at, self.syn_xmits) {
                    self.rtt_sample(now, now.duration_since(sent));
                }
                self.snd_una = 1;
                self.established(now);
            }
            Handshake::Done => {
                if seg.flags.contains(Flags::SYN) {
                    // A retransmitted SYN-ACK: our ACK was lost.
                    self.ack_pending = true;
                    return;
                }
            }
        }
        if let Some((val, _)) = seg.timestamps {
            // RFC 7323: never back in time (an old duplicate must not make our next ACK echo a
            // timestamp from before a timeout, which would undo it as spurious).
            if self.peer_aseq(seg.seq) <= self.rcv_nxt && (val.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = val;
            }
        }
        if seg.flags.contains(Flags::ACK) && !self.handle_ack(now, seg) {
            return;
        }
        if self.closed.is_none() {
            self.handle_data(seg);
            self.check_both_closed(now);
        }
    }

    pub(super) fn established(&mut self, now: Instant) {
        self.handshake = Handshake::Done;
        self.snd_nxt = self.snd_nxt.max(1);
        self.backoff = 0;
        self.last_progress = now;
        self.rto_at = None;
        self.events.push_back(Event::Connected);
        self.arm_keepalive(now);
    }

    pub(super) fn handle_rst(&mut self, seg: &StreamRepr<'_>) {
        match self.handshake {
            Handshake::SynSent => {
                if seg.flags.contains(Flags::ACK) && seg.ack == self.iss.wrapping_add(1) {
                    self.finish(Some(StreamError::Refused), true);
                }
            }
            _ => {
                // RFC 5961: only an exact match resets; anything else in the window earns a
                // challenge ACK, so a blind attacker must guess the sequence number exactly.
                let at = self.peer_aseq(seg.seq);
                if at == self.rcv_nxt + u64::from(self.fin_received) {
                    self.finish(Some(StreamError::Reset), true);
                } else if at > self.rcv_nxt && at < self.rcv_nxt + self.recv_window() {
                    self.ack_pending = true;
                }
            }
        }
    }

    pub(super) fn update_window(&mut self, seg: &StreamRepr<'_>, seq: u64, ack: u64) {
        if ack > self.snd_wl2 || (ack == self.snd_wl2 && seq >= self.snd_wl1) {
            self.snd_wnd = u64::from(seg.window) << self.peer_wscale;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.persist_at = None;
            }
        }
    }

    pub(super) fn recv_window(&self) -> u64 {
        let used = self.rcv_nxt - self.recv_ring.base();
        self.recv_ring.capacity() as u64 - used
    }

    pub(super) fn handle_data(&mut self, seg: &StreamRepr<'_>) {
        let fin = seg.flags.contains(Flags::FIN);
        let start = self.peer_aseq(seg.seq);
        if seg.payload.is_empty() && !fin {
            // An empty segment below the window is unacceptable and earns an ACK (RFC 793):
            // that is how keepalive and window probes get their answer. Pure ACKs sit at
            // rcv_nxt and get none, or two idle peers would ping-pong.
            if start < self.rcv_nxt {
                self.ack_pending = true;
            }
            return;
        }
        let end = start + seg.payload.len() as u64;
        let window_end = self.recv_ring.base() + self.recv_ring.capacity() as u64;
        // A FIN below what we hold is stale (or forged); one already known never moves.
        if fin && self.peer_fin_at.is_none() && end >= self.rcv_nxt && end <= window_end {
            self.peer_fin_at = Some(end);
        }
        let s = start.max(self.rcv_nxt);
        let e = end.min(window_end);
        self.ack_pending = true;
        if end <= self.rcv_nxt && (!fin || self.fin_received) {
            self.stats.duplicate_segments += 1;
        }
        if s < e {
            let data = &seg.payload[(s - start) as usize..(e - start) as usize];
            if s == self.rcv_nxt {
                let was_empty = self.readable() == 0;
                self.recv_ring.write_at(s, data);
                self.rcv_nxt = e;
                // The new bytes may reach (or cover) several ranges held out of order.
                while let Some((fs, fe)) = self.ooo.first().filter(|r| r.0 <= self.rcv_nxt) {
                    let _ = fs;
                    self.rcv_nxt = self.rcv_nxt.max(fe);
                    self.ooo.remove_below(self.rcv_nxt);
                }
                self.ooo.remove_below(self.rcv_nxt);
                self.stats.bytes_received += e - s;
                if was_empty {
                    self.events.push_back(Event::Readable);
                }
            } else if self.ooo.insert(s, e) {
                self.recv_ring.write_at(s, data);
                self.recent_ooo = self.ooo.range_at(s);
                self.stats.out_of_order_segments += 1;
            }
        }
        if let Some(f) = self.peer_fin_at {
            if f == self.rcv_nxt && !self.fin_received {
                self.fin_received = true;
                self.active_close = self.fin_queued && self.snd_nxt > self.data_end();
                self.events.push_back(Event::PeerClosed);
            }
        }
    }

    pub(super) fn maybe_window_update(&mut self) {
        if self.handshake != Handshake::Done || self.closed.is_some() {
            return;
        }
        let right = self.rcv_nxt + self.recv_window();
        let opened = right.saturating_sub(self.rcv_adv_right);
        let mss = u64::from(self.cfg.mss);
        let advertised = self.rcv_adv_right.saturating_sub(self.rcv_nxt);
        if opened >= (self.recv_ring.capacity() as u64 / 4).max(2 * mss)
            || (advertised < 2 * mss && opened >= mss)
        {
            self.ack_pending = true;
        }
    }
}
