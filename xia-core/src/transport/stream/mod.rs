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

use crate::transport::ranges::RangeSet;
use crate::transport::ring::Ring;
use crate::transport::rtt::RttEstimator;
use crate::wire::stream::StreamRepr;

mod input;
mod output;
mod recovery;
mod timers;

use crate::transport::model::{PathModel, Snapshot};

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
    /// How the congestion window is set.
    pub congestion: Congestion,
}

pub use crate::transport::Congestion;

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
            congestion: Congestion::default(),
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
    /// Retransmission timeouts found spurious afterwards (the original segment had arrived:
    /// the ACK echoes its timestamp), and undone.
    pub spurious_rtos: u64,
    /// Tail-loss probes sent.
    pub tail_loss_probes: u64,
}

impl StreamStats {
    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &StreamStats) {
        macro_rules! add {
            ($($f:ident),*) => { $(self.$f += other.$f;)* };
        }
        add!(
            segments_sent,
            segments_received,
            bytes_sent,
            bytes_retransmitted,
            bytes_received,
            segments_retransmitted,
            rto_events,
            duplicate_segments,
            out_of_order_segments,
            acks_sent,
            spurious_rtos,
            tail_loss_probes
        );
    }

    /// The counters with their names (prefixed `stream_`), for `xia stats`.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("stream_bytes_sent", self.bytes_sent),
            ("stream_bytes_retransmitted", self.bytes_retransmitted),
            ("stream_segments_retransmitted", self.segments_retransmitted),
            ("stream_rto_events", self.rto_events),
            ("stream_spurious_rtos", self.spurious_rtos),
            ("stream_tail_loss_probes", self.tail_loss_probes),
            ("stream_out_of_order_segments", self.out_of_order_segments),
            ("stream_duplicate_segments", self.duplicate_segments),
        ]
    }
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
    /// What had been delivered when it was (last) sent.
    snap: Snapshot,
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
    model: PathModel,
    rtt: RttEstimator,
    rto_at: Option<Instant>,
    backoff: u32,
    last_progress: Instant,
    persist_at: Option<Instant>,
    /// When a tail-loss probe goes (RFC 8985): a segment to draw the ACK that shows what is
    /// missing, long before the RTO.
    tlp_at: Option<Instant>,
    /// A probe is due on the next poll; one was sent since the last progress.
    tlp_pending: bool,
    tlp_sent: bool,
    /// What an RTO changed, to undo if it proves spurious: our timestamp when it fired, the
    /// window and threshold before.
    rto_undo: Option<(u32, u64, u64)>,
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
            model: PathModel::new(now),
            rtt,
            rto_at: None,
            backoff: 0,
            last_progress: now,
            persist_at: None,
            tlp_at: None,
            tlp_pending: false,
            tlp_sent: false,
            rto_undo: None,
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

    fn finish(&mut self, err: Option<StreamError>, report: bool) {
        if self.closed.is_none() {
            self.closed = Some(err);
            self.rto_at = None;
            self.persist_at = None;
            self.keepalive_at = None;
            self.tlp_at = None;
            self.tlp_pending = false;
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
