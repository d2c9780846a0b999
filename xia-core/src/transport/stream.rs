//! STREAM: a reliable, ordered, flow- and congestion-controlled byte stream between two DAGs,
//! as a sans-IO state machine (quinn-proto style): segments go in through
//! [`Stream::handle_segment`], come out of [`Stream::poll_transmit`]; time is passed in, timers
//! are reported by [`Stream::poll_timeout`] and fired by [`Stream::handle_timeout`].
//!
//! TCP's semantics on XSTREAM headers: three-way handshake, FIN and RST; a byte window (32-bit
//! field, scaling negotiated); SACK; RACK-style time-based loss detection (reordering-tolerant
//! fast retransmit); RTO from microsecond RTT samples (timestamps option) with a low floor;
//! NewReno-style congestion control over SACK; no delayed ACK (one immediate ACK per batch of
//! received segments); keepalive; typed errors on reset or timeout.
//!
//! Internally every sequence number is a 64-bit offset from the initial sequence number (SYN at
//! 0, data from 1, FIN after the data), so wrap-around is handled in one place: where 32-bit
//! wire values are read and written.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ranges::RangeSet;
use super::ring::Ring;
use super::rtt::RttEstimator;
use crate::wire::stream::{Flags, SackBlocks, StreamRepr, HEADER_LEN};

/// Tunables of a connection.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Largest payload this side accepts per segment (advertised as MSS).
    pub mss: u16,
    /// Send buffer (bytes the application may have written and not yet acknowledged).
    pub send_buffer: usize,
    /// Receive buffer (the largest window advertised).
    ///
    /// Both buffers default to 16 MiB, taken on first use: a host shares its cores with the
    /// daemon and the applications at both ends, and the window must cover the milliseconds
    /// one of them waits for a core. With 4 MiB, STREAM at MTU 9000 between two namespaces
    /// ranged 3.5-6.4 Gbit/s (median 4.5) with no loss; with 16 MiB, 5.5-6.5 (median 6.2).
    pub recv_buffer: usize,
    /// RTO before any RTT sample.
    pub initial_rto: Duration,
    /// RTO floor.
    pub min_rto: Duration,
    /// RTO ceiling (backoff included).
    pub max_rto: Duration,
    /// Give up when no progress is made for this long (handshake included).
    pub user_timeout: Duration,
    /// Idle time before keepalive probes; `None` disables them.
    pub keepalive: Option<Duration>,
    /// Interval between keepalive probes.
    pub keepalive_interval: Duration,
    /// Unanswered probes before the connection times out.
    pub keepalive_probes: u32,
    /// How long the side that closed first lingers to re-acknowledge a retransmitted FIN.
    pub time_wait: Duration,
    /// Initial congestion window, in segments.
    pub initial_window: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            mss: 1400,
            send_buffer: 16 << 20,
            recv_buffer: 16 << 20,
            initial_rto: Duration::from_millis(200),
            min_rto: Duration::from_millis(5),
            max_rto: Duration::from_secs(2),
            user_timeout: Duration::from_secs(30),
            keepalive: Some(Duration::from_secs(15)),
            keepalive_interval: Duration::from_secs(1),
            keepalive_probes: 5,
            time_wait: Duration::from_secs(1),
            initial_window: 10,
        }
    }
}

/// How a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The peer refused the connection (RST to our SYN).
    #[error("connection refused")]
    Refused,
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    Reset,
    /// No progress for the user timeout, or keepalive probes went unanswered.
    #[error("connection timed out")]
    TimedOut,
    /// The network says the peer cannot be reached.
    #[error("peer unreachable")]
    Unreachable,
    /// Writing after `close`, or using a connection that is gone.
    #[error("connection closed")]
    Closed,
}

/// What happened to a connection, for the layer above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// New in-order data can be read.
    Readable,
    /// Send buffer space was freed after a short write.
    Writable,
    /// The peer sent FIN: after the buffered data, reads return end of stream.
    PeerClosed,
    /// The connection is over (cleanly, or with the error).
    Closed(Option<StreamError>),
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Segments sent (all kinds).
    pub segments_sent: u64,
    /// Segments received.
    pub segments_received: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes retransmitted.
    pub bytes_retransmitted: u64,
    /// Payload bytes received in order (delivered to the buffer).
    pub bytes_received: u64,
    /// Segments sent again (after RACK loss detection or a timeout).
    pub segments_retransmitted: u64,
    /// Retransmission timeouts.
    pub rto_events: u64,
    /// Segments that carried only data already received.
    pub duplicate_segments: u64,
    /// Segments received out of order.
    pub out_of_order_segments: u64,
    /// Pure ACKs sent.
    pub acks_sent: u64,
}

/// One transmitted unit of sequence space, kept until cumulatively acknowledged.
#[derive(Debug, Clone, Copy)]
struct Seg {
    start: u64,
    end: u64,
    fin: bool,
    sent_at: Instant,
    xmits: u32,
    sacked: bool,
    /// A transmission is outstanding (not acknowledged, SACKed or deemed lost).
    in_flight: bool,
    /// Deemed lost and waiting to be sent again.
    lost: bool,
}

impl Seg {
    fn len(&self) -> u64 {
        self.end - self.start
    }
    fn payload_len(&self) -> u64 {
        self.len() - u64::from(self.fin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    SynSent,
    SynReceived,
    Done,
}

/// Largest number of SACK blocks put in one segment (fits beside timestamps).
const SACK_BLOCKS_SENT: usize = 3;
/// Out-of-order ranges kept by the receiver.
const MAX_OOO_RANGES: usize = 64;
/// MSS assumed when the peer announces none.
const DEFAULT_PEER_MSS: u16 = 1200;
/// Reordering window floor: RACK waits at least this long before calling a hole a loss.
const MIN_REORDER_WINDOW: Duration = Duration::from_micros(500);

/// One STREAM connection.
#[derive(Debug)]
pub struct Stream {
    cfg: StreamConfig,
    handshake: Handshake,
    closed: Option<Option<StreamError>>,
    epoch: Instant,
    events: VecDeque<Event>,
    stats: StreamStats,

    // --- send side (our sequence space: SYN = 0, data from 1) ---
    iss: u32,
    snd_una: u64,
    snd_nxt: u64,
    send_ring: Ring,
    /// Data bytes written by the application: data occupies `1..1 + written`.
    written: u64,
    fin_queued: bool,
    fin_acked: bool,
    write_blocked: bool,
    syn_sent_at: Option<Instant>,
    syn_xmits: u32,
    scoreboard: VecDeque<Seg>,
    lost_count: usize,
    pipe: u64,
    cwnd: u64,
    ssthresh: u64,
    recovery_point: u64,
    fast_recovery: bool,
    rack_time: Option<Instant>,
    rtt: RttEstimator,
    rto_at: Option<Instant>,
    backoff: u32,
    last_progress: Instant,
    persist_at: Option<Instant>,
    force_probe: bool,
    snd_wnd: u64,
    snd_wl1: u64,
    snd_wl2: u64,
    peer_mss: u16,
    peer_wscale: u8,
    ws_ok: bool,
    sack_ok: bool,
    ts_ok: bool,
    rst_pending: bool,

    // --- receive side (peer's sequence space: its SYN = 0, data from 1) ---
    irs: u32,
    rcv_nxt: u64,
    recv_ring: Ring,
    ooo: RangeSet,
    recent_ooo: Option<(u64, u64)>,
    peer_fin_at: Option<u64>,
    fin_received: bool,
    /// We had sent our FIN when the peer's arrived.
    active_close: bool,
    ack_pending: bool,
    rcv_adv_right: u64,
    rcv_wscale: u8,
    ts_recent: u32,
    last_recv: Instant,
    keepalive_sent: u32,
    keepalive_at: Option<Instant>,
    time_wait_at: Option<Instant>,
}

/// The 64-bit value congruent to `x` mod 2^32 closest to `reference`.
fn unwrap32(x: u32, reference: u64) -> u64 {
    let base = reference & !0xFFFF_FFFF;
    let cand = base | u64::from(x);
    let span = 1u64 << 32;
    if cand > reference && cand - reference > span / 2 && cand >= span {
        cand - span
    } else if cand < reference && reference - cand > span / 2 {
        cand + span
    } else {
        cand
    }
}

impl Stream {
    fn new(cfg: StreamConfig, now: Instant, iss: u32, handshake: Handshake) -> Stream {
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let mss = u64::from(cfg.mss);
        let rcv_wscale =
            (0..=14u8).find(|s| (cfg.recv_buffer as u64 >> s) <= u64::from(u32::MAX)).unwrap_or(14);
        Stream {
            handshake,
            closed: None,
            epoch: now,
            events: VecDeque::new(),
            stats: StreamStats::default(),
            iss,
            snd_una: 0,
            snd_nxt: 0,
            send_ring: Ring::new(cfg.send_buffer, 1),
            written: 0,
            fin_queued: false,
            fin_acked: false,
            write_blocked: false,
            syn_sent_at: None,
            syn_xmits: 0,
            scoreboard: VecDeque::new(),
            lost_count: 0,
            pipe: 0,
            cwnd: mss * u64::from(cfg.initial_window),
            ssthresh: u64::MAX,
            recovery_point: 0,
            fast_recovery: false,
            rack_time: None,
            rtt,
            rto_at: None,
            backoff: 0,
            last_progress: now,
            persist_at: None,
            force_probe: false,
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            peer_mss: DEFAULT_PEER_MSS,
            peer_wscale: 0,
            ws_ok: false,
            sack_ok: false,
            ts_ok: false,
            rst_pending: false,
            irs: 0,
            rcv_nxt: 1,
            recv_ring: Ring::new(cfg.recv_buffer, 1),
            ooo: RangeSet::new(MAX_OOO_RANGES),
            recent_ooo: None,
            peer_fin_at: None,
            fin_received: false,
            active_close: false,
            ack_pending: false,
            rcv_adv_right: 0,
            rcv_wscale,
            ts_recent: 0,
            last_recv: now,
            keepalive_sent: 0,
            keepalive_at: None,
            time_wait_at: None,
            cfg,
        }
    }

    /// Opens a connection: the first [`Stream::poll_transmit`] sends the SYN. `iss` is the
    /// initial sequence number (random, from the caller).
    pub fn connect(cfg: StreamConfig, now: Instant, iss: u32) -> Stream {
        Stream::new(cfg, now, iss, Handshake::SynSent)
    }

    /// Accepts a connection whose SYN is `syn`: the first [`Stream::poll_transmit`] sends the
    /// SYN-ACK.
    pub fn accept(cfg: StreamConfig, now: Instant, iss: u32, syn: &StreamRepr<'_>) -> Stream {
        let mut s = Stream::new(cfg, now, iss, Handshake::SynReceived);
        s.irs = syn.seq;
        s.take_syn_options(syn);
        s.snd_wnd = u64::from(syn.window);
        s.ts_recent = syn.timestamps.map_or(0, |t| t.0);
        s
    }

    fn take_syn_options(&mut self, syn: &StreamRepr<'_>) {
        self.peer_mss = syn.mss.unwrap_or(DEFAULT_PEER_MSS).max(64);
        self.sack_ok = syn.sack_permitted;
        self.ts_ok = syn.timestamps.is_some();
        self.peer_wscale = syn.window_scale.map_or(0, |w| w.min(14));
        self.ws_ok = syn.window_scale.is_some();
        if !self.ws_ok {
            self.rcv_wscale = 0;
        }
    }

    // ------------------------------------------------------------------ application side

    /// Copies as much of `data` as fits into the send buffer; 0 when full (a
    /// [`Event::Writable`] follows when space frees up).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        if let Some(e) = self.closed {
            return Err(e.unwrap_or(StreamError::Closed));
        }
        if self.fin_queued {
            return Err(StreamError::Closed);
        }
        let n = data.len().min(self.send_space());
        if n < data.len() {
            self.write_blocked = true;
        }
        if n > 0 {
            let at = 1 + self.written;
            self.send_ring.write_at(at, &data[..n]);
            self.written += n as u64;
        }
        Ok(n)
    }

    /// The free space of the send buffer, in place (at most two slices), for a caller that
    /// reads the application's bytes straight into it; then [`Stream::commit_write`].
    pub fn write_slices(&mut self) -> (&mut [u8], &mut [u8]) {
        let free = if self.closed.is_some() || self.fin_queued { 0 } else { self.send_space() };
        self.send_ring.slices_mut(1 + self.written, free)
    }

    /// Takes `n` bytes put into [`Stream::write_slices`] as written by the application.
    pub fn commit_write(&mut self, n: usize) {
        let n = n.min(self.send_space());
        self.written += n as u64;
        if self.send_space() == 0 {
            // Full: a Writable event follows when acknowledgments free space.
            self.write_blocked = true;
        }
    }

    /// Free space in the send buffer.
    pub fn send_space(&self) -> usize {
        let unacked = (1 + self.written) - self.send_ring.base();
        self.send_ring.capacity() - unacked as usize
    }

    /// Bytes written and not yet acknowledged by the peer.
    pub fn unacked(&self) -> u64 {
        (1 + self.written) - self.send_ring.base()
    }

    /// Bytes ready to read.
    pub fn readable(&self) -> usize {
        (self.rcv_nxt - self.recv_ring.base()) as usize
    }

    /// The readable bytes in place, as at most two slices (see [`Stream::consume`]).
    pub fn peek(&self) -> (&[u8], &[u8]) {
        self.recv_ring.slices(self.recv_ring.base(), self.readable())
    }

    /// Drops `n` bytes from the front of the readable data (after [`Stream::peek`]).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.readable());
        self.recv_ring.advance(n);
        self.maybe_window_update();
    }

    /// Reads into `out`; 0 with data pending means nothing yet, see [`Stream::is_read_closed`].
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.readable());
        self.recv_ring.read_at(self.recv_ring.base(), &mut out[..n]);
        self.consume(n);
        n
    }

    /// True once the peer's FIN arrived and every byte before it was read.
    pub fn is_read_closed(&self) -> bool {
        self.fin_received && self.readable() == 0
    }

    /// Closes our direction after the buffered data (FIN).
    pub fn close(&mut self) {
        if self.closed.is_none() {
            self.fin_queued = true;
        }
    }

    /// Aborts: an RST is sent, and the connection is closed.
    pub fn abort(&mut self) {
        if self.closed.is_none() {
            // A peer that never answered our SYN has nothing to reset.
            if self.handshake != Handshake::SynSent {
                self.rst_pending = true;
            }
            self.finish(Some(StreamError::Reset), false);
        }
    }

    /// The network reported the peer unreachable (XCMP): fails a connection still in its
    /// handshake; an established one keeps trying until its own timeout.
    pub fn handle_unreachable(&mut self) {
        if self.handshake == Handshake::SynSent {
            self.finish(Some(StreamError::Unreachable), true);
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        self.rtt.srtt()
    }

    /// Congestion window, bytes.
    pub fn cwnd(&self) -> u64 {
        self.cwnd
    }

    /// True when the handshake completed.
    pub fn is_established(&self) -> bool {
        self.handshake == Handshake::Done && self.closed.is_none()
    }

    /// `Some(error or None)` once the connection is over.
    pub fn closed(&self) -> Option<Option<StreamError>> {
        self.closed
    }

    /// True when nothing is left to send or wait for: the host can forget the connection.
    pub fn is_drained(&self) -> bool {
        self.closed.is_some() && !self.rst_pending && self.time_wait_at.is_none()
    }

    /// The peer's MSS.
    pub fn peer_mss(&self) -> u16 {
        self.peer_mss
    }

    // ------------------------------------------------------------------ closing

    fn finish(&mut self, err: Option<StreamError>, report: bool) {
        if self.closed.is_none() {
            self.closed = Some(err);
            self.rto_at = None;
            self.persist_at = None;
            self.keepalive_at = None;
            if report || err.is_none() {
                self.events.push_back(Event::Closed(err));
            }
        }
    }

    fn check_both_closed(&mut self, now: Instant) {
        if self.fin_acked && self.fin_received && self.closed.is_none() {
            self.finish(None, true);
            // The side that sent FIN first lingers to acknowledge a retransmitted peer FIN;
            // the side that answered a FIN is done at once.
            if self.active_close {
                self.time_wait_at = Some(now + self.cfg.time_wait);
            }
        }
    }

    // ------------------------------------------------------------------ timers

    /// When [`Stream::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.rto_at, self.persist_at, self.keepalive_at, self.time_wait_at].into_iter().flatten().min()
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

    fn arm_rto(&mut self, now: Instant) {
        let outstanding = !self.scoreboard.is_empty() || self.handshake != Handshake::Done;
        if outstanding {
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rtt.rto_backoff(self.backoff));
            }
        } else {
            self.rto_at = None;
        }
    }

    fn restart_rto(&mut self, now: Instant) {
        self.rto_at = None;
        self.arm_rto(now);
    }

    fn arm_keepalive(&mut self, now: Instant) {
        if let Some(idle) = self.cfg.keepalive {
            if self.handshake == Handshake::Done && self.closed.is_none() {
                self.keepalive_at = Some(now + idle);
                self.keepalive_sent = 0;
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
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
        // A closed window is not congestion: probes time out by design (persist).
        if self.snd_wnd > 0 {
            // Everything outstanding is presumed lost: go back to one segment.
            self.ssthresh = (self.pipe / 2).max(2 * mss);
            self.cwnd = mss;
        }
        self.recovery_point = self.snd_nxt;
        self.fast_recovery = false;
        // RFC 6675: after a timeout the SACK information is not trusted (a receiver may have
        // discarded what it SACKed), so everything unacknowledged goes again.
        for s in self.scoreboard.iter_mut() {
            s.sacked = false;
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

    // ------------------------------------------------------------------ receiving

    fn peer_aseq(&self, seq: u32) -> u64 {
        unwrap32(seq.wrapping_sub(self.irs), self.rcv_nxt)
    }

    fn our_aseq(&self, ack: u32) -> u64 {
        unwrap32(ack.wrapping_sub(self.iss), self.snd_una)
    }

    fn now_ts(&self, now: Instant) -> u32 {
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
                    self.rtt.sample(now.duration_since(sent));
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
                    self.rtt.sample(now.duration_since(sent));
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
            if self.peer_aseq(seg.seq) <= self.rcv_nxt {
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

    fn established(&mut self, now: Instant) {
        self.handshake = Handshake::Done;
        self.snd_nxt = self.snd_nxt.max(1);
        self.backoff = 0;
        self.last_progress = now;
        self.rto_at = None;
        self.events.push_back(Event::Connected);
        self.arm_keepalive(now);
    }

    fn handle_rst(&mut self, seg: &StreamRepr<'_>) {
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

    fn update_window(&mut self, seg: &StreamRepr<'_>, seq: u64, ack: u64) {
        if ack > self.snd_wl2 || (ack == self.snd_wl2 && seq >= self.snd_wl1) {
            self.snd_wnd = u64::from(seg.window) << self.peer_wscale;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.persist_at = None;
            }
        }
    }

    /// Processes the acknowledgment of `seg`; false when it acknowledges what was never sent
    /// (the segment is then dropped after an ACK, RFC 793).
    fn handle_ack(&mut self, now: Instant, seg: &StreamRepr<'_>) -> bool {
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
                        if s.xmits == 1 {
                            delivered_at = delivered_at.max(Some(s.sent_at));
                            if !self.ts_ok {
                                self.rtt.sample(now.duration_since(s.sent_at));
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
            if let Some((_, ecr)) = seg.timestamps.filter(|_| self.ts_ok) {
                if ecr != 0 {
                    let rtt = self.now_ts(now).wrapping_sub(ecr);
                    if rtt < 60_000_000 {
                        self.rtt.sample(Duration::from_micros(u64::from(rtt)));
                    }
                }
            }
            self.on_ack_cc(newly_acked);
            self.restart_rto(now);
        }
        if self.sack_ok {
            for &(l, r) in seg.sack.as_slice() {
                let (l, r) = (self.our_aseq(l), self.our_aseq(r));
                if l >= r || r > self.snd_nxt {
                    continue;
                }
                delivered_at = delivered_at.max(self.mark_sacked(l.max(self.snd_una), r));
            }
        }
        if let Some(t) = delivered_at {
            self.rack_time = self.rack_time.max(Some(t));
            self.detect_losses();
        }
        true
    }

    /// Marks segments within `[l, r)` SACKed; returns the latest send time among them.
    fn mark_sacked(&mut self, l: u64, r: u64) -> Option<Instant> {
        let mut latest = None;
        let first = self.scoreboard.partition_point(|s| s.start < l);
        for s in self.scoreboard.range_mut(first..) {
            if s.start >= r {
                break;
            }
            if s.end <= r && !s.sacked {
                s.sacked = true;
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
    fn detect_losses(&mut self) {
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
        if newly_lost && first_lost >= self.recovery_point {
            // One reduction per window of data; no growth until that window is acknowledged.
            let mss = self.mss();
            self.ssthresh = (self.cwnd / 2).max(2 * mss);
            self.cwnd = self.ssthresh;
            self.recovery_point = self.snd_nxt;
            self.fast_recovery = true;
        }
    }

    fn on_ack_cc(&mut self, acked: u64) {
        if self.fast_recovery && self.snd_una >= self.recovery_point {
            self.fast_recovery = false;
        }
        if acked == 0 || self.fast_recovery {
            return;
        }
        let mss = self.mss();
        if self.cwnd < self.ssthresh {
            self.cwnd += acked;
        } else {
            self.cwnd += (mss * acked / self.cwnd).max(1);
        }
        // Never let the window run far ahead of what the peer can take.
        self.cwnd = self.cwnd.min((self.snd_wnd + 4 * mss).max(self.cfg.initial_window as u64 * mss));
    }

    fn recv_window(&self) -> u64 {
        let used = self.rcv_nxt - self.recv_ring.base();
        self.recv_ring.capacity() as u64 - used
    }

    fn handle_data(&mut self, seg: &StreamRepr<'_>) {
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

    fn maybe_window_update(&mut self) {
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

    // ------------------------------------------------------------------ sending

    fn mss(&self) -> u64 {
        u64::from(self.cfg.mss.min(self.peer_mss))
    }

    fn data_end(&self) -> u64 {
        1 + self.written
    }

    fn header_template(&self, now: Instant, flags: Flags) -> StreamRepr<'static> {
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

    fn syn_repr(&self, now: Instant) -> StreamRepr<'static> {
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

    fn send_pure_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let mut r = self.header_template(now, Flags::ACK);
        r.seq = self.iss.wrapping_add(self.snd_nxt as u32);
        self.emit_ack(&r, buf)
    }

    fn emit_ack(&mut self, r: &StreamRepr<'_>, buf: &mut [u8]) -> Option<usize> {
        self.stats.acks_sent += 1;
        self.emit(r, buf)
    }

    fn emit(&mut self, r: &StreamRepr<'_>, buf: &mut [u8]) -> Option<usize> {
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
    fn emit_segment(
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
    fn payload_room_bare(&self, buf_len: usize) -> u64 {
        let h = HEADER_LEN + if self.ts_ok { 12 } else { 0 };
        (buf_len.saturating_sub(h) as u64).min(self.mss())
    }

    /// Payload room in a segment with this connection's usual options.
    fn payload_room(&self, buf_len: usize) -> u64 {
        let mut h = HEADER_LEN;
        if self.ts_ok {
            h += 12;
        }
        if self.sack_ok && !self.ooo.is_empty() {
            h += 4 + 8 * SACK_BLOCKS_SENT.min(self.ooo.len() + 1);
        }
        (buf_len.saturating_sub(h) as u64).min(self.mss())
    }

    fn send_retransmission(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
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
        let seg = &mut self.scoreboard[i];
        seg.lost = false;
        seg.in_flight = true;
        seg.xmits += 1;
        seg.sent_at = now;
        self.lost_count -= 1;
        self.pipe += s.len();
        self.stats.bytes_retransmitted += s.payload_len();
        self.stats.segments_retransmitted += 1;
        self.arm_rto(now);
        Some(n)
    }

    fn send_new(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
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
        };
        self.pipe += seg.len();
        self.scoreboard.push_back(seg);
        self.snd_nxt = seg_end;
        self.arm_rto(now);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_picks_the_closest_value() {
        assert_eq!(unwrap32(5, 0), 5);
        assert_eq!(unwrap32(5, 1 << 32), (1 << 32) + 5);
        assert_eq!(unwrap32(u32::MAX, (1 << 32) + 3), u64::from(u32::MAX));
        assert_eq!(unwrap32(3, u64::from(u32::MAX) - 2), (1 << 32) + 3);
        assert_eq!(unwrap32(u32::MAX, 2), u64::from(u32::MAX));
    }
}
