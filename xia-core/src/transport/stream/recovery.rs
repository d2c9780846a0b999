//! Acknowledgements in: what they acknowledge (cumulative and SACK), RTT samples, time-based
//! loss detection tolerant of reordering (RACK-style), and the congestion window.

use std::time::{Duration, Instant};

use crate::wire::stream::StreamRepr;

use super::*;

impl Stream {
    /// Processes the acknowledgment of `seg`; false when it acknowledges what was never sent
    /// (the segment is then dropped after an ACK, RFC 793).
    pub(super) fn handle_ack(&mut self, now: Instant, seg: &StreamRepr<'_>) -> bool {
        let ack = self.our_aseq(seg.ack);
        if ack > self.snd_nxt {
            self.ack_pending = true;
            return false;
        }
        let seq = self.peer_aseq(seg.seq);
        self.update_window(seg, seq, ack);
        if self.snd_wnd == 0 {
            // A peer that keeps answering with a closed window is alive, not stuck.
            self.last_progress = now;
        }
        let mut delivered_at: Option<Instant> = None;
        let mut newly_acked = 0u64;
        let delivered_before = self.model.delivered();
        if ack > self.snd_una {
            while let Some(front) = self.scoreboard.front_mut() {
                if front.end <= ack {
                    let s = self.scoreboard.pop_front().expect("front exists");
                    if s.in_flight {
                        self.pipe -= s.len();
                    }
                    if s.lost {
                        self.lost_count -= 1;
                    }
                    if !s.sacked {
                        newly_acked += s.len();
                        self.model.on_delivered(now, s.len(), s.sent_at, s.snap);
                        if s.xmits == 1 {
                            delivered_at = delivered_at.max(Some(s.sent_at));
                            if !self.ts_ok {
                                self.rtt_sample(now, now.duration_since(s.sent_at));
                            }
                        }
                    }
                    if s.fin {
                        self.fin_acked = true;
                    }
                } else {
                    if front.start < ack {
                        // Partly acknowledged (the peer trimmed it): keep the rest.
                        let cut = ack - front.start;
                        if front.in_flight {
                            self.pipe -= cut;
                        }
                        front.start = ack;
                        newly_acked += cut;
                    }
                    break;
                }
            }
            let data_acked_to = ack.min(1 + self.written);
            if data_acked_to > self.send_ring.base() {
                self.send_ring.advance((data_acked_to - self.send_ring.base()) as usize);
                if self.write_blocked {
                    self.write_blocked = false;
                    self.events.push_back(Event::Writable);
                }
            }
            self.snd_una = ack;
            self.backoff = 0;
            self.last_progress = now;
            self.tlp_sent = false;
            if let Some((_, ecr)) = seg.timestamps.filter(|_| self.ts_ok) {
                if let Some((rto_ts, cwnd, ssthresh)) = self.rto_undo.take() {
                    // The first ACK after a timeout echoes a transmission from before it: the
                    // original segments got through, the timeout was spurious (Eifel, RFC 3522).
                    if ecr != 0 && (rto_ts.wrapping_sub(ecr) as i32) > 0 {
                        self.undo_rto(cwnd, ssthresh);
                    }
                }
                if ecr != 0 {
                    let rtt = self.now_ts(now).wrapping_sub(ecr);
                    if rtt < 60_000_000 {
                        self.rtt_sample(now, Duration::from_micros(u64::from(rtt)));
                    }
                }
            }
            self.on_ack_cc(newly_acked);
            self.restart_rto(now);
            self.arm_tlp(now);
        }
        if self.sack_ok {
            for &(l, r) in seg.sack.as_slice() {
                let (l, r) = (self.our_aseq(l), self.our_aseq(r));
                if l >= r || r > self.snd_nxt {
                    continue;
                }
                delivered_at = delivered_at.max(self.mark_sacked(now, l.max(self.snd_una), r));
            }
        }
        if let Some(t) = delivered_at {
            self.rack_time = self.rack_time.max(Some(t));
            self.detect_losses();
        }
        self.model.on_ack_end(now);
        if self.cfg.congestion == Congestion::Model {
            let acked = self.model.delivered() - delivered_before;
            if acked > 0 || self.cwnd < self.model.cwnd(self.cwnd, 0, self.mss()) {
                self.cwnd = self.model.cwnd(self.cwnd, acked, self.mss());
                self.cap_cwnd();
            }
        }
        true
    }

    /// A timeout found spurious: what it marked lost and has not sent again is in flight
    /// after all, and the window is back where it was.
    fn undo_rto(&mut self, cwnd: u64, ssthresh: u64) {
        for s in self.scoreboard.iter_mut() {
            if s.lost {
                s.lost = false;
                s.in_flight = true;
                self.lost_count -= 1;
                self.pipe += s.end - s.start;
            }
        }
        self.cwnd = self.cwnd.max(cwnd);
        self.ssthresh = ssthresh;
        self.stats.spurious_rtos += 1;
    }

    /// An RTT sample, for the estimator and the path model.
    pub(super) fn rtt_sample(&mut self, now: Instant, rtt: Duration) {
        self.rtt.sample(rtt);
        self.model.on_rtt(now, rtt);
    }

    /// Never lets the window run far ahead of what the peer can take.
    fn cap_cwnd(&mut self) {
        let mss = self.mss();
        self.cwnd = self.cwnd.min((self.snd_wnd + 4 * mss).max(self.cfg.initial_window as u64 * mss));
    }

    /// Marks segments within `[l, r)` SACKed; returns the latest send time among them.
    pub(super) fn mark_sacked(&mut self, now: Instant, l: u64, r: u64) -> Option<Instant> {
        let mut latest = None;
        let first = self.scoreboard.partition_point(|s| s.start < l);
        for s in self.scoreboard.range_mut(first..) {
            if s.start >= r {
                break;
            }
            if s.end <= r && !s.sacked {
                s.sacked = true;
                self.model.on_delivered(now, s.len(), s.sent_at, s.snap);
                if s.in_flight {
                    self.pipe -= s.len();
                    s.in_flight = false;
                }
                if s.lost {
                    s.lost = false;
                    self.lost_count -= 1;
                }
                if s.xmits == 1 {
                    latest = latest.max(Some(s.sent_at));
                }
            }
        }
        latest
    }

    /// RACK: a segment sent a reordering window before one that got through is lost.
    pub(super) fn detect_losses(&mut self) {
        let Some(rack) = self.rack_time else { return };
        let reo = self.rtt.min_rtt().map_or(MIN_REORDER_WINDOW, |m| (m / 4).max(MIN_REORDER_WINDOW));
        let Some(threshold) = rack.checked_sub(reo) else { return };
        let mut newly_lost = false;
        let mut first_lost = u64::MAX;
        for s in self.scoreboard.iter_mut() {
            if s.sent_at >= threshold {
                if s.xmits == 1 {
                    // Later original transmissions are all newer.
                    break;
                }
                continue;
            }
            if s.in_flight && !s.sacked {
                s.in_flight = false;
                s.lost = true;
                self.pipe -= s.len();
                self.lost_count += 1;
                newly_lost = true;
                first_lost = first_lost.min(s.start);
            }
        }
        if newly_lost && first_lost >= self.recovery_point && self.cfg.congestion == Congestion::Reno {
            // One reduction per window of data; no growth until that window is acknowledged.
            let mss = self.mss();
            self.ssthresh = (self.cwnd / 2).max(2 * mss);
            self.cwnd = self.ssthresh;
            self.recovery_point = self.snd_nxt;
            self.fast_recovery = true;
        }
    }

    pub(super) fn on_ack_cc(&mut self, acked: u64) {
        if self.fast_recovery && self.snd_una >= self.recovery_point {
            self.fast_recovery = false;
        }
        // The model's window is set once the whole ACK is taken in.
        if acked == 0 || self.fast_recovery || self.cfg.congestion == Congestion::Model {
            return;
        }
        let mss = self.mss();
        if self.cwnd < self.ssthresh {
            self.cwnd += acked;
        } else {
            self.cwnd += (mss * acked / self.cwnd).max(1);
        }
        self.cap_cwnd();
    }
}
