//! A model of the path for congestion control: how fast it delivers and how short its round
//! trip is when nothing waits in a queue (BBR's model: draft-cardwell-iccrg-bbr-congestion-
//! control and draft-cheng-iccrg-delivery-rate-estimation, simplified).
//!
//! Every segment sent carries a snapshot of what had been delivered when it left; when it is
//! acknowledged (cumulatively or by SACK) the bytes delivered in between, over the time they
//! took, are a delivery-rate sample. The bottleneck bandwidth is the largest sample of the
//! last [`BW_ROUNDS`] round trips; the minimum RTT is the smallest sample, refreshed every
//! [`MIN_RTT_WINDOW`] by a short probe with the window at four segments (so a standing queue
//! cannot pass for the path). The window is then [`CWND_GAIN`] bandwidth-delay products: a
//! random loss, a reordered segment taken for lost, or a corrupted frame changes neither
//! figure, so none of them shrinks the window, which is what keeps Reno-style controllers at
//! a fraction of the path on lossy links. Congestion shows up as what it is, a lower delivery
//! rate, and the window follows within [`BW_ROUNDS`] round trips.
//!
//! Until the bandwidth stops growing (by 25 % over three round trips) the window grows as in
//! slow start, capped at [`STARTUP_GAIN`] times the current estimate so the queue it leaves
//! behind stays bounded. ACKs that arrive in bursts (batching receivers, relays, interrupt
//! coalescing) add the largest recent burst beyond the rate to the window, as BBR's
//! `extra_acked` does.
//!
//! Not done (yet): pacing (segments leave as the window opens), and BBRv2's response to
//! persistent loss when the path is shared.

use std::time::{Duration, Instant};

/// Round trips over which the bandwidth's maximum is taken.
pub(crate) const BW_ROUNDS: usize = 10;
/// How long a minimum RTT holds before it is measured again.
pub(crate) const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// The window, in bandwidth-delay products, once the pipe is full.
pub(crate) const CWND_GAIN: f64 = 2.0;
/// The window's cap during startup, in bandwidth-delay products.
pub(crate) const STARTUP_GAIN: f64 = 2.89;
/// The shortest RTT the window is sized for. Between two processes of one machine the path's
/// RTT is tens of microseconds, but the daemons take frames in batches and share cores, so
/// what is in flight at a moment must cover a scheduling quantum, not only a wire RTT. (On a
/// 9 Gbit/s veth, 1 ms or 4 ms here measured the same as none, within the machine's noise.)
pub(crate) const MIN_RTT_FLOOR: Duration = Duration::from_millis(1);
/// How long the window stays small to measure the minimum RTT (at least one RTT).
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);

/// What had been delivered when a segment was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
}

/// The path model of one connection.
#[derive(Debug)]
pub(crate) struct PathModel {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// The most recently sent of the segments delivered by the ACK being processed.
    newest: Option<(Instant, Snapshot)>,
    round: u64,
    next_round_delivered: u64,
    /// Per round (slot = round % BW_ROUNDS): the round and its largest rate, bytes/s.
    bw: [(u64, f64); BW_ROUNDS],
    full_bw: f64,
    full_bw_rounds: u32,
    filled_pipe: bool,
    min_rtt: Option<Duration>,
    min_rtt_at: Instant,
    /// While measuring the minimum RTT: until when, and the smallest sample so far.
    probe_rtt: Option<(Instant, Option<Duration>)>,
    /// ACK aggregation (BBR's extra_acked): bytes delivered beyond what the bandwidth explains
    /// since `ack_epoch` began; per round (as `bw`), the largest excess.
    ack_epoch: Instant,
    ack_epoch_acked: u64,
    delivered_at_last_ack: u64,
    extra_acked: [(u64, u64); BW_ROUNDS],
}

impl PathModel {
    pub(crate) fn new(now: Instant) -> PathModel {
        PathModel {
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            newest: None,
            round: 0,
            next_round_delivered: 0,
            bw: [(0, 0.0); BW_ROUNDS],
            full_bw: 0.0,
            full_bw_rounds: 0,
            filled_pipe: false,
            min_rtt: None,
            min_rtt_at: now,
            probe_rtt: None,
            ack_epoch: now,
            ack_epoch_acked: 0,
            delivered_at_last_ack: 0,
            extra_acked: [(0, 0); BW_ROUNDS],
        }
    }

    /// A segment leaves at `now` with `pipe` bytes already in flight: its snapshot.
    pub(crate) fn on_send(&mut self, now: Instant, pipe: u64) -> Snapshot {
        if pipe == 0 {
            // Nothing in flight: the next sample's interval starts now, not at the last ACK.
            self.first_sent_time = now;
            self.delivered_time = now;
            // An idle path has no queue to drain: a stale minimum RTT holds for another window
            // instead of starting with a probe at four segments (a transfer after a pause,
            // such as a migration's first chunks, would begin throttled).
            if self.probe_rtt.is_none() && now >= self.min_rtt_at + MIN_RTT_WINDOW {
                self.min_rtt_at = now;
            }
        }
        Snapshot {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
        }
    }

    /// `len` bytes sent at `sent_at` (with `snap`) were delivered (acknowledged or SACKed).
    pub(crate) fn on_delivered(&mut self, now: Instant, len: u64, sent_at: Instant, snap: Snapshot) {
        self.delivered += len;
        self.delivered_time = now;
        if self.newest.is_none_or(|(t, _)| sent_at > t) {
            self.newest = Some((sent_at, snap));
        }
    }

    /// An RTT sample.
    pub(crate) fn on_rtt(&mut self, now: Instant, rtt: Duration) {
        if self.min_rtt.is_none_or(|m| rtt <= m) {
            self.min_rtt = Some(rtt);
            self.min_rtt_at = now;
        }
        if let Some((_, m)) = self.probe_rtt.as_mut() {
            *m = Some(m.map_or(rtt, |m| m.min(rtt)));
        }
    }

    /// After an ACK has been processed: the rate sample it gave, round trips, the filters.
    pub(crate) fn on_ack_end(&mut self, now: Instant) {
        self.update_probe_rtt(now);
        let acked = self.delivered - self.delivered_at_last_ack;
        self.delivered_at_last_ack = self.delivered;
        self.update_extra_acked(now, acked);
        let Some((sent_at, snap)) = self.newest.take() else { return };
        self.first_sent_time = sent_at;
        let round_start = snap.delivered >= self.next_round_delivered;
        if round_start {
            self.next_round_delivered = self.delivered;
            self.round += 1;
        }
        let send_elapsed = sent_at.saturating_duration_since(snap.first_sent_time);
        let ack_elapsed = self.delivered_time.saturating_duration_since(snap.delivered_time);
        let interval = send_elapsed.max(ack_elapsed);
        // An interval shorter than the path's RTT comes from ACKs compressed on the way back:
        // it would overstate the rate.
        if interval.is_zero() || self.min_rtt.is_some_and(|m| interval < m) {
            return;
        }
        let rate = (self.delivered - snap.delivered) as f64 / interval.as_secs_f64();
        let slot = &mut self.bw[(self.round % BW_ROUNDS as u64) as usize];
        if slot.0 != self.round {
            *slot = (self.round, rate);
        } else {
            slot.1 = slot.1.max(rate);
        }
        if round_start && !self.filled_pipe {
            let bw = self.bandwidth();
            if bw >= self.full_bw * 1.25 {
                self.full_bw = bw;
                self.full_bw_rounds = 0;
            } else {
                self.full_bw_rounds += 1;
                self.filled_pipe = self.full_bw_rounds >= 3;
            }
        }
    }

    /// ACKs come in bursts when the receiver, a relay or a NIC batches them: the window must
    /// hold what a burst's worth of ACKs releases at once, on top of the BDP, or the sender
    /// sits idle between bursts and its rate samples (and with them the window) shrink.
    fn update_extra_acked(&mut self, now: Instant, acked: u64) {
        if acked == 0 {
            return;
        }
        let bw = self.bandwidth();
        let expected = bw * now.saturating_duration_since(self.ack_epoch).as_secs_f64();
        if bw == 0.0 || self.ack_epoch_acked as f64 <= expected {
            // Deliveries fell back to the rate: a new epoch starts here.
            self.ack_epoch = now;
            self.ack_epoch_acked = 0;
        }
        self.ack_epoch_acked += acked;
        let expected = bw * now.saturating_duration_since(self.ack_epoch).as_secs_f64();
        let extra = (self.ack_epoch_acked as f64 - expected).max(0.0) as u64;
        let slot = &mut self.extra_acked[(self.round % BW_ROUNDS as u64) as usize];
        if slot.0 != self.round {
            *slot = (self.round, extra);
        } else {
            slot.1 = slot.1.max(extra);
        }
    }

    fn extra_acked(&self) -> u64 {
        let oldest = self.round.saturating_sub(BW_ROUNDS as u64 - 1);
        self.extra_acked
            .iter()
            .filter(|(r, _)| *r >= oldest && *r <= self.round)
            .map(|(_, e)| *e)
            .max()
            .unwrap_or(0)
    }

    fn update_probe_rtt(&mut self, now: Instant) {
        match self.probe_rtt {
            None if self.min_rtt.is_some() && now >= self.min_rtt_at + MIN_RTT_WINDOW => {
                let rtt = self.min_rtt.unwrap_or_default();
                self.probe_rtt = Some((now + PROBE_RTT_TIME.max(rtt), None));
            }
            Some((until, seen)) if now >= until => {
                if let Some(m) = seen {
                    self.min_rtt = Some(m);
                }
                self.min_rtt_at = now;
                self.probe_rtt = None;
            }
            _ => {}
        }
    }

    /// The bottleneck bandwidth, bytes/s (0 before any sample).
    pub(crate) fn bandwidth(&self) -> f64 {
        let oldest = self.round.saturating_sub(BW_ROUNDS as u64 - 1);
        self.bw.iter().filter(|(r, _)| *r >= oldest && *r <= self.round).map(|(_, b)| *b).fold(0.0, f64::max)
    }

    /// The bandwidth-delay product, bytes, once both are known; the RTT taken as at least
    /// [`MIN_RTT_FLOOR`].
    pub(crate) fn bdp(&self) -> Option<u64> {
        let bw = self.bandwidth();
        let rtt = self.min_rtt?.max(MIN_RTT_FLOOR);
        (bw > 0.0).then_some((bw * rtt.as_secs_f64()) as u64)
    }

    /// The congestion window for a connection whose window is `cwnd` and which just had
    /// `acked` bytes delivered.
    pub(crate) fn cwnd(&self, cwnd: u64, acked: u64, mss: u64) -> u64 {
        let floor = 4 * mss;
        let w = match self.bdp() {
            Some(bdp) if self.filled_pipe => {
                // BBR caps the aggregation allowance at the window it adds to.
                let w = (CWND_GAIN * bdp as f64) as u64;
                (w + self.extra_acked().min(w)).max(floor)
            }
            Some(bdp) => (cwnd + acked).min(((STARTUP_GAIN * bdp as f64) as u64).max(cwnd)).max(floor),
            // No RTT yet: slow start, but not past what the first estimate can correct.
            None => (cwnd + acked).min(cwnd.max(64 * mss)),
        };
        if self.probe_rtt.is_some() {
            w.min(floor)
        } else {
            w
        }
    }

    /// Bytes delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender with a steady 1 MB in flight over a 10 ms path: the samples say 100 MB/s.
    #[test]
    fn steady_delivery_gives_the_rate_and_the_bdp() {
        let t0 = Instant::now();
        let mut m = PathModel::new(t0);
        let ms = Duration::from_millis;
        let seg = 10_000u64;
        let mut sent: std::collections::VecDeque<(Instant, Snapshot)> = Default::default();
        let mut pipe = 0;
        // 100 segments a 10 ms round trip, for 30 round trips.
        for i in 0..3000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            if i >= 100 {
                let (at, snap) = sent.pop_front().unwrap();
                m.on_rtt(now, now - at);
                m.on_delivered(now, seg, at, snap);
                m.on_ack_end(now);
                pipe -= seg;
            }
            sent.push_back((now, m.on_send(now, pipe)));
            pipe += seg;
        }
        let bw = m.bandwidth();
        assert!((95e6..105e6).contains(&bw), "{bw}");
        assert_eq!(m.min_rtt, Some(ms(10)));
        let bdp = m.bdp().unwrap();
        assert!((950_000..1_050_000).contains(&bdp), "{bdp}");
        assert!(m.filled_pipe, "a rate that stopped growing ends startup");
        // Twice the BDP, whatever was lost.
        let w = m.cwnd(10 * seg, seg, 1400);
        assert!((1_900_000..2_100_000).contains(&w), "{w}");
    }

    #[test]
    fn a_transfer_after_a_long_pause_does_not_start_with_a_probe() {
        let t0 = Instant::now();
        let mut m = PathModel::new(t0);
        m.on_rtt(t0, Duration::from_millis(10));
        let later = t0 + 3 * MIN_RTT_WINDOW;
        m.on_send(later, 0);
        m.on_ack_end(later + Duration::from_millis(10));
        assert!(m.probe_rtt.is_none());
        assert_eq!(m.min_rtt, Some(Duration::from_millis(10)));
    }

    #[test]
    fn the_minimum_rtt_is_measured_again_with_a_small_window() {
        let t0 = Instant::now();
        let mut m = PathModel::new(t0);
        m.on_rtt(t0, Duration::from_millis(10));
        let later = t0 + MIN_RTT_WINDOW + Duration::from_millis(1);
        m.on_ack_end(later);
        assert_eq!(m.cwnd(1 << 20, 0, 1000), 4000, "probing");
        m.on_rtt(later, Duration::from_millis(30));
        m.on_ack_end(later + Duration::from_millis(300));
        assert_eq!(m.min_rtt, Some(Duration::from_millis(30)), "the path got longer");
        assert!(m.probe_rtt.is_none());
    }
}
