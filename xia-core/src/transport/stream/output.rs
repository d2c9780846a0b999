//! Segments out: SYN and header templates with options (MSS, window scale, timestamps,
//! SACK), pure ACKs, retransmissions first, then new data within both windows.

use std::time::Instant;

use crate::wire::stream::{Flags, SackBlocks, StreamRepr, CHECK_OPTION_LEN, HEADER_LEN};

use super::*;

impl Stream {
    pub(super) fn mss(&self) -> u64 {
        u64::from(self.cfg.mss.min(self.peer_mss))
    }

    pub(super) fn data_end(&self) -> u64 {
        1 + self.written
    }

    pub(super) fn header_template(&self, now: Instant, flags: Flags) -> StreamRepr<'static> {
        let ack = self.rcv_nxt + u64::from(self.fin_received);
        let mut r = StreamRepr {
            flags,
            seq: 0,
            ack: if flags.contains(Flags::ACK) { self.irs.wrapping_add(ack as u32) } else { 0 },
            window: (self.recv_window() >> self.rcv_wscale).min(u64::from(u32::MAX)) as u32,
            ..StreamRepr::default()
        };
        if self.ts_ok {
            r.timestamps = Some((self.now_ts(now), self.ts_recent));
        }
        if self.sack_ok && !self.ooo.is_empty() {
            let mut blocks: Vec<(u32, u32)> = Vec::with_capacity(SACK_BLOCKS_SENT);
            let wire = |a: u64| self.irs.wrapping_add(a as u32);
            if let Some((s, e)) = self.recent_ooo.filter(|r| self.ooo.contains(r.0, r.1)) {
                blocks.push((wire(s), wire(e)));
            }
            for (s, e) in self.ooo.iter() {
                if blocks.len() == SACK_BLOCKS_SENT {
                    break;
                }
                if Some((s, e)) != self.recent_ooo {
                    blocks.push((wire(s), wire(e)));
                }
            }
            r.sack = SackBlocks::new(&blocks).expect("at most SACK_BLOCKS_SENT blocks");
        }
        r
    }

    pub(super) fn syn_repr(&self, now: Instant) -> StreamRepr<'static> {
        let synack = self.handshake == Handshake::SynReceived;
        let flags = if synack { Flags::SYN | Flags::ACK } else { Flags::SYN };
        let mut r = StreamRepr {
            flags,
            seq: self.iss,
            ack: if synack { self.irs.wrapping_add(1) } else { 0 },
            window: (self.cfg.recv_buffer as u64).min(u64::from(u32::MAX)) as u32,
            mss: Some(self.cfg.mss),
            ..StreamRepr::default()
        };
        // Offer options on SYN; on SYN-ACK answer only those the peer offered.
        if !synack || self.ws_ok {
            r.window_scale = Some(self.rcv_wscale);
        }
        if !synack || self.sack_ok {
            r.sack_permitted = true;
        }
        if !synack || self.ts_ok {
            r.timestamps = Some((self.now_ts(now), self.ts_recent));
        }
        r
    }

    /// Writes the next segment to send into `buf` (whose length is the largest STREAM packet
    /// the path carries) and returns its length; `None` when there is nothing to send.
    /// Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.rst_pending {
            self.rst_pending = false;
            let r = StreamRepr {
                flags: Flags::RST | Flags::ACK,
                // Our SYN took sequence number 0: the peer expects at least 1.
                seq: self.iss.wrapping_add(self.snd_nxt.max(1) as u32),
                ack: self.irs.wrapping_add((self.rcv_nxt + u64::from(self.fin_received)) as u32),
                ..StreamRepr::default()
            };
            return self.emit(&r, buf);
        }
        if self.closed.is_some() {
            if self.ack_pending && self.time_wait_at.is_some() {
                return self.send_pure_ack(now, buf);
            }
            return None;
        }
        if self.handshake != Handshake::Done {
            if self.syn_sent_at.is_none() {
                let r = self.syn_repr(now);
                self.syn_sent_at = Some(now);
                self.syn_xmits += 1;
                self.arm_rto(now);
                return self.emit(&r, buf);
            }
            return None;
        }
        if std::mem::take(&mut self.tlp_pending) {
            if let Some(n) = self.send_probe(now, buf) {
                return Some(n);
            }
        }
        if let Some(n) = self.send_retransmission(now, buf) {
            return Some(n);
        }
        if let Some(n) = self.send_new(now, buf) {
            return Some(n);
        }
        if self.force_probe {
            self.force_probe = false;
            // Zero-window or keepalive probe: an old sequence number draws an ACK.
            let mut r = self.header_template(now, Flags::ACK);
            r.seq = self.iss.wrapping_add(self.snd_una.wrapping_sub(1) as u32);
            return self.emit_ack(&r, buf);
        }
        if self.ack_pending {
            return self.send_pure_ack(now, buf);
        }
        None
    }

    pub(super) fn send_pure_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let mut r = self.header_template(now, Flags::ACK);
        r.seq = self.iss.wrapping_add(self.snd_nxt as u32);
        self.emit_ack(&r, buf)
    }

    pub(super) fn emit_ack(&mut self, r: &StreamRepr<'_>, buf: &mut [u8]) -> Option<usize> {
        self.stats.acks_sent += 1;
        self.emit(r, buf)
    }

    pub(super) fn emit(&mut self, r: &StreamRepr<'_>, buf: &mut [u8]) -> Option<usize> {
        if r.flags.contains(Flags::ACK) {
            self.ack_pending = false;
            self.rcv_adv_right = self.rcv_nxt + self.recv_window();
        }
        let len = r.buffer_len();
        r.emit(buf).ok()?;
        self.stats.segments_sent += 1;
        Some(len)
    }

    /// Emits a segment covering `[start, end)` (data, and FIN as the last unit when `fin`).
    pub(super) fn emit_segment(
        &mut self,
        now: Instant,
        start: u64,
        end: u64,
        fin: bool,
        buf: &mut [u8],
    ) -> Option<usize> {
        let mut flags = Flags::ACK;
        if fin {
            flags |= Flags::FIN;
        }
        let payload = end - start - u64::from(fin);
        if payload > 0 && start + payload == self.data_end() {
            flags |= Flags::PSH;
        }
        let mut r = self.header_template(now, flags);
        r.seq = self.iss.wrapping_add(start as u32);
        let mut hlen = r.header_len();
        if hlen + payload as usize > buf.len() {
            // SACK blocks are advice: leave them out rather than not send the data.
            r.sack = SackBlocks::default();
            hlen = r.header_len();
            if hlen + payload as usize > buf.len() {
                return None;
            }
        }
        r.emit(&mut buf[..hlen]).ok()?;
        if payload > 0 {
            self.send_ring.read_at(start, &mut buf[hlen..hlen + payload as usize]);
        }
        self.ack_pending = false;
        self.rcv_adv_right = self.rcv_nxt + self.recv_window();
        self.stats.segments_sent += 1;
        self.stats.bytes_sent += payload;
        Some(hlen + payload as usize)
    }

    /// Payload room in a segment with timestamps but no SACK blocks.
    pub(super) fn payload_room_bare(&self, buf_len: usize) -> u64 {
        let h = HEADER_LEN + CHECK_OPTION_LEN + if self.ts_ok { 12 } else { 0 };
        (buf_len.saturating_sub(h) as u64).min(self.mss())
    }

    /// Payload room in a segment with this connection's usual options.
    pub(super) fn payload_room(&self, buf_len: usize) -> u64 {
        let mut h = HEADER_LEN + CHECK_OPTION_LEN;
        if self.ts_ok {
            h += 12;
        }
        if self.sack_ok && !self.ooo.is_empty() {
            h += 4 + 8 * SACK_BLOCKS_SENT.min(self.ooo.len() + 1);
        }
        (buf_len.saturating_sub(h) as u64).min(self.mss())
    }

    pub(super) fn send_retransmission(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.lost_count == 0 || self.pipe >= self.cwnd {
            return None;
        }
        let i = self.scoreboard.iter().position(|s| s.lost)?;
        // The path may carry less than when the segment first went (a longer DAG): cut it.
        let room = self.payload_room_bare(buf.len());
        if room == 0 {
            return None;
        }
        if self.scoreboard[i].payload_len() > room {
            let mut tail = self.scoreboard[i];
            let cut = self.scoreboard[i].start + room;
            self.scoreboard[i].end = cut;
            self.scoreboard[i].fin = false;
            tail.start = cut;
            self.scoreboard.insert(i + 1, tail);
            self.lost_count += 1;
        }
        let s = self.scoreboard[i];
        let n = self.emit_segment(now, s.start, s.end, s.fin, buf)?;
        let snap = self.model.on_send(now, self.pipe);
        let seg = &mut self.scoreboard[i];
        seg.lost = false;
        seg.in_flight = true;
        seg.xmits += 1;
        seg.sent_at = now;
        seg.snap = snap;
        self.lost_count -= 1;
        self.pipe += s.len();
        self.stats.bytes_retransmitted += s.payload_len();
        self.stats.segments_retransmitted += 1;
        self.arm_rto(now);
        Some(n)
    }

    /// A tail-loss probe: a new segment if the peer's window takes one, else the last one
    /// again; outside the congestion window, which it does not change.
    fn send_probe(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let cwnd = std::mem::replace(&mut self.cwnd, u64::MAX);
        let new_data = self.snd_nxt < self.data_end() && self.snd_nxt < self.snd_una + self.snd_wnd;
        let sent = if new_data {
            self.send_new(now, buf)
        } else if self.lost_count == 0 {
            match self.scoreboard.iter().rposition(|s| s.in_flight && !s.sacked) {
                Some(i) => {
                    let s = &mut self.scoreboard[i];
                    let xmits = s.xmits;
                    s.in_flight = false;
                    s.lost = true;
                    self.pipe -= s.end - s.start;
                    self.lost_count += 1;
                    let sent = self.send_retransmission(now, buf);
                    // The probe counts as the segment's transmission for RACK (RFC 8985): its
                    // SACK moves the RACK time past the segments sent before it, so those lost
                    // at the tail are found at once, not at the RTO.
                    if sent.is_some() {
                        self.scoreboard[i].xmits = xmits;
                    }
                    sent
                }
                None => None,
            }
        } else {
            self.send_retransmission(now, buf)
        };
        self.cwnd = cwnd;
        if sent.is_some() {
            self.stats.tail_loss_probes += 1;
            // The RTO runs from the probe (RFC 8985, 7.3): its answer is due a round trip on.
            self.restart_rto(now);
        }
        sent
    }

    pub(super) fn send_new(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let data_end = self.data_end();
        let fin_pending = self.fin_queued && self.snd_nxt <= data_end;
        if self.snd_nxt >= data_end && !fin_pending {
            return None;
        }
        let room = self.payload_room(buf.len());
        let window_right = self.snd_una + self.snd_wnd;
        let probe = std::mem::take(&mut self.force_probe);
        let mut end = (self.snd_nxt + room).min(data_end);
        if !probe {
            if self.pipe >= self.cwnd {
                return None;
            }
            end = end.min(window_right.max(self.snd_nxt));
        } else {
            // A window probe carries one byte past the window.
            end = end.min(self.snd_nxt + 1);
        }
        let fin = self.fin_queued && end == data_end;
        if end == self.snd_nxt && !fin {
            // Window closed: probe later.
            if self.persist_at.is_none() && self.scoreboard.is_empty() {
                self.persist_at = Some(now + self.rtt.rto_backoff(self.backoff));
            }
            return None;
        }
        let seg_end = end + u64::from(fin);
        let n = self.emit_segment(now, self.snd_nxt, seg_end, fin, buf)?;
        let seg = Seg {
            start: self.snd_nxt,
            end: seg_end,
            fin,
            sent_at: now,
            xmits: 1,
            sacked: false,
            in_flight: true,
            lost: false,
            snap: self.model.on_send(now, self.pipe),
        };
        self.pipe += seg.len();
        self.scoreboard.push_back(seg);
        self.snd_nxt = seg_end;
        self.arm_rto(now);
        self.arm_tlp(now);
        Some(n)
    }
}
