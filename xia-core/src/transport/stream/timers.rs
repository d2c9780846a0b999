//! A connection's timers: retransmission (RTO, with backoff), keepalive, and what firing them does.

use std::time::{Duration, Instant};

use super::*;

impl Stream {
    /// When [`Stream::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.rto_at, self.tlp_at, self.persist_at, self.keepalive_at, self.time_wait_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.time_wait_at.is_some_and(|t| t <= now) {
            self.time_wait_at = None;
        }
        if self.closed.is_some() {
            return;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.on_rto(now);
        } else if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            if !self.scoreboard.is_empty() && self.handshake == Handshake::Done {
                self.tlp_pending = true;
                self.tlp_sent = true;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            self.force_probe = true;
            self.backoff = (self.backoff + 1).min(16);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = None;
            if self.keepalive_sent >= self.cfg.keepalive_probes {
                self.finish(Some(StreamError::TimedOut), true);
                return;
            }
            self.keepalive_sent += 1;
            self.force_probe = true;
            self.keepalive_at = Some(now + self.cfg.keepalive_interval);
        }
    }

    pub(super) fn arm_rto(&mut self, now: Instant) {
        let outstanding = !self.scoreboard.is_empty() || self.handshake != Handshake::Done;
        if outstanding {
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rtt.rto_backoff(self.backoff));
            }
        } else {
            self.rto_at = None;
        }
    }

    pub(super) fn restart_rto(&mut self, now: Instant) {
        self.rto_at = None;
        self.arm_rto(now);
    }

    /// Arms the tail-loss probe: two smoothed RTTs after the last send or progress (at least
    /// 1 ms), once per episode, and only while it would come before the RTO.
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        if self.tlp_sent
            || self.scoreboard.is_empty()
            || self.handshake != Handshake::Done
            || !self.rtt.has_samples()
        {
            self.tlp_at = None;
            return;
        }
        let pto = (2 * self.rtt.srtt()).max(Duration::from_millis(1));
        let at = now + pto;
        self.tlp_at = self.rto_at.is_none_or(|r| at < r).then_some(at);
    }

    pub(super) fn arm_keepalive(&mut self, now: Instant) {
        if let Some(idle) = self.cfg.keepalive {
            if self.handshake == Handshake::Done && self.closed.is_none() {
                self.keepalive_at = Some(now + idle);
                self.keepalive_sent = 0;
            }
        }
    }

    pub(super) fn on_rto(&mut self, now: Instant) {
        if now.duration_since(self.last_progress) >= self.cfg.user_timeout {
            self.finish(Some(StreamError::TimedOut), true);
            return;
        }
        self.stats.rto_events += 1;
        self.backoff = (self.backoff + 1).min(16);
        if self.handshake != Handshake::Done {
            // The SYN (or SYN-ACK) goes again on the next poll.
            self.syn_sent_at = None;
            self.arm_rto(now);
            return;
        }
        let mss = self.mss();
        let (prior_cwnd, prior_ssthresh) = (self.cwnd, self.ssthresh);
        // A closed window is not congestion: probes time out by design (persist).
        if self.snd_wnd > 0 {
            // Everything outstanding is presumed lost: go back to one segment.
            self.ssthresh = (self.pipe / 2).max(2 * mss);
            self.cwnd = mss;
        }
        self.recovery_point = self.snd_nxt;
        self.fast_recovery = false;
        self.tlp_at = None;
        self.tlp_pending = false;
        // What the timeout changes, to be undone if the next ACK shows it was spurious.
        if self.ts_ok && self.rto_undo.is_none() {
            self.rto_undo = Some((self.now_ts(now), prior_cwnd, prior_ssthresh));
        }
        // Everything unacknowledged and not SACKed goes again (this receiver never discards
        // what it SACKed).
        for s in self.scoreboard.iter_mut() {
            if s.sacked {
                continue;
            }
            s.in_flight = false;
            if !s.lost {
                s.lost = true;
                self.lost_count += 1;
            }
        }
        self.pipe = 0;
        self.rack_time = None;
        self.arm_rto(now);
    }
}
