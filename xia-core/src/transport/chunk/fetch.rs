//! The receiver-driven fetcher: a sans-IO state machine asking for byte ranges of chunks over a
//! window of requests set from a model of the path ([`crate::transport::model`]; AIMD as an
//! option), with RTT sampling, loss detection by time and timeout, and SHA-1
//! verification of every chunk against its CID.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::DEFAULT_MAX_CHUNK;
use crate::dag::Dag;
use crate::transport::model::{PathModel, Snapshot};
use crate::transport::ranges::RangeSet;
use crate::transport::rtt::RttEstimator;
use crate::transport::Congestion;
use crate::wire::chunk::{ChunkRepr, NackReason};
use crate::xid::{IdMap, Xid, XidMap};

/// Requests given up on whose late answers are still accepted.
const RETIRED_MEMORY: usize = 4096;

/// The smallest request (bytes): a handful of pieces, so that a request still carries data
/// worth its header when the window has shrunk to its minimum (two of them).
pub const MIN_REQUEST: u64 = 8 << 10;

/// Tunables of a [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Bytes asked for per request (a burst of pieces from the responder).
    pub request_size: u32,
    /// Largest chunk accepted; a responder claiming more fails the fetch.
    pub max_chunk: usize,
    /// Initial window of outstanding requested bytes.
    pub initial_window: u64,
    /// Largest window.
    pub max_window: u64,
    /// Chunks fetched at the same time.
    pub max_active: usize,
    /// RTO before any sample.
    pub initial_rto: Duration,
    /// RTO floor.
    pub min_rto: Duration,
    /// RTO ceiling.
    pub max_rto: Duration,
    /// A chunk that makes no progress for this long fails; so does one whose copies keep
    /// failing their CID for this long after the first bad one.
    pub stall_timeout: Duration,
    /// Hand assembled chunks out for hashing ([`Fetcher::poll_verify`]) instead of hashing them
    /// in [`Fetcher::handle_response`]: a daemon hashes on another core while it goes on
    /// receiving.
    pub defer_verify: bool,
    /// How the window of requests is set.
    pub congestion: Congestion,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            request_size: 64 << 10,
            max_chunk: DEFAULT_MAX_CHUNK,
            initial_window: 256 << 10,
            max_window: 32 << 20,
            max_active: 8,
            initial_rto: Duration::from_millis(200),
            min_rto: Duration::from_millis(5),
            max_rto: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(10),
            defer_verify: false,
            congestion: Congestion::default(),
        }
    }
}

/// Why a chunk could not be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The node asked says it does not have the chunk.
    #[error("chunk not found")]
    NotFound,
    /// The chunk is larger than allowed.
    #[error("chunk larger than the limit")]
    TooLarge,
    /// No progress for the stall timeout.
    #[error("chunk fetch timed out")]
    TimedOut,
    /// Fetched again and again for the stall timeout, never matching its CID.
    #[error("chunk content does not match its CID")]
    Corrupt,
    /// The node holding the chunk refused the range asked.
    #[error("byte range outside the chunk")]
    BadRange,
}

/// A finished fetch.
#[derive(Debug)]
pub struct Completed {
    /// The caller's tag for the fetch.
    pub tag: u64,
    /// The CID fetched.
    pub cid: Xid,
    /// The verified bytes, or why not.
    pub result: Result<Vec<u8>, ChunkError>,
}

/// An assembled chunk to hash, from [`Fetcher::poll_verify`]; answer with
/// [`Fetcher::verified`].
#[derive(Debug)]
pub struct Verify {
    /// The fetch it belongs to.
    pub job: u64,
    /// What the bytes must hash to.
    pub cid: Xid,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Verify {
    /// Hashes the bytes: true when they are the chunk named.
    pub fn check(&self) -> bool {
        Xid::cid_of(&self.data) == self.cid
    }
}

/// A request to send, from [`Fetcher::poll_transmit`].
#[derive(Debug)]
pub struct Request<'a> {
    /// Where to send it (a DAG whose intent is the CID).
    pub dag: &'a Dag,
    /// The CHUNK header.
    pub repr: ChunkRepr<'static>,
}

/// Counters of a fetcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Requests sent, first tries and repeats.
    pub requests_sent: u64,
    /// Requests for ranges asked before (after a loss or a timeout).
    pub requests_repeated: u64,
    /// Request timeouts.
    pub timeouts: u64,
    /// Response pieces received.
    pub pieces_received: u64,
    /// Pieces carrying only bytes already held.
    pub duplicate_pieces: u64,
    /// Pieces refused (unknown chunk, inconsistent length, beyond the limit).
    pub pieces_refused: u64,
    /// Chunks whose bytes did not match their CID (fetched again).
    pub corrupt_chunks: u64,
    /// Chunks delivered.
    pub chunks_completed: u64,
    /// Chunk bytes delivered.
    pub bytes_completed: u64,
}

impl FetchStats {
    /// Every counter with its name (prefixed `fetch_`), for `xiad` stats output.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("fetch_requests_sent", self.requests_sent),
            ("fetch_requests_repeated", self.requests_repeated),
            ("fetch_timeouts", self.timeouts),
            ("fetch_pieces_received", self.pieces_received),
            ("fetch_duplicate_pieces", self.duplicate_pieces),
            ("fetch_pieces_refused", self.pieces_refused),
            ("fetch_corrupt_chunks", self.corrupt_chunks),
            ("fetch_chunks_completed", self.chunks_completed),
            ("fetch_bytes_completed", self.bytes_completed),
        ]
    }
}

#[derive(Debug)]
struct Job {
    tag: u64,
    cid: Xid,
    dag: Dag,
    len: Option<usize>,
    buf: Vec<u8>,
    have: RangeSet,
    /// Bytes asked for by outstanding requests.
    asked: RangeSet,
    /// A request is outstanding for this chunk while its length is unknown.
    probing: bool,
    /// Every byte range ever asked (a repeat gives no RTT sample: Karn).
    ever_asked: RangeSet,
    /// A request was sent (stall timeouts count from then).
    started: bool,
    /// Tags of further fetches of the same CID.
    also: Vec<u64>,
    /// Do not ask before this (the holder said it was busy).
    not_before: Option<Instant>,
    /// Copies that failed their CID, and when the first did.
    corrupt: u32,
    corrupt_since: Option<Instant>,
    last_progress: Instant,
    /// All bytes are here and out for hashing: nothing more to ask or take.
    verifying: bool,
    /// Names the holder asked (a hash of the DAG): its answers come in the order asked.
    holder: u64,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    job: u64,
    holder: u64,
    offset: u64,
    end: u64,
    sent_at: Instant,
    repeat: bool,
    /// What had been delivered when it was sent (for the path model's rate samples).
    snap: Snapshot,
}

/// The receiving side of CHUNK: fetches chunks by CID over a window of requests.
#[derive(Debug)]
pub struct Fetcher {
    cfg: FetchConfig,
    jobs: IdMap<Job>,
    /// Jobs in the order they were added (their ids).
    order: VecDeque<u64>,
    by_cid: XidMap<u64>,
    next_job: u64,
    outstanding:
        std::collections::HashMap<u32, Outstanding, std::hash::BuildHasherDefault<crate::xid::IdHasher>>,
    /// Requests given up on (lost or timed out), whose late answers are still welcome.
    retired: std::collections::HashMap<u32, Outstanding, std::hash::BuildHasherDefault<crate::xid::IdHasher>>,
    retired_order: VecDeque<u32>,
    next_request: u32,
    in_flight: u64,
    window: f64,
    ssthresh: f64,
    recovery_until: Option<Instant>,
    model: PathModel,
    rtt: RttEstimator,
    backoff: u32,
    /// When new bytes last arrived: request timers run from then, as TCP restarts its
    /// retransmission timer on every ACK of new data (requests queue at the holder, so a
    /// request's round trip grows with the window; only silence means loss).
    last_piece_at: Option<Instant>,
    completed: VecDeque<Completed>,
    to_verify: VecDeque<Verify>,
    stats: FetchStats,
}

impl Fetcher {
    /// A fetcher with nothing to do yet. `first_request_id` should be random (answers to
    /// another fetcher's requests are then ignored).
    pub fn new(cfg: FetchConfig, first_request_id: u32) -> Fetcher {
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        Fetcher {
            window: cfg.initial_window as f64,
            ssthresh: f64::INFINITY,
            cfg,
            jobs: IdMap::default(),
            order: VecDeque::new(),
            by_cid: XidMap::default(),
            next_job: 0,
            outstanding: Default::default(),
            retired: Default::default(),
            retired_order: VecDeque::new(),
            next_request: first_request_id,
            in_flight: 0,
            recovery_until: None,
            model: PathModel::new(Instant::now()),
            rtt,
            backoff: 0,
            last_piece_at: None,
            completed: VecDeque::new(),
            to_verify: VecDeque::new(),
            stats: FetchStats::default(),
        }
    }

    /// Queues a fetch of `cid` from `dag` (whose intent should be `cid`); `len` if known. A CID
    /// already being fetched is fetched once, and every caller gets its own completion.
    pub fn fetch(&mut self, now: Instant, cid: Xid, dag: Dag, len: Option<usize>, tag: u64) {
        if let Some(&existing) = self.by_cid.get(cid.id()) {
            self.jobs.get_mut(&existing).expect("indexed job exists").also.push(tag);
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let holder = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dag.to_dag_string().hash(&mut h);
            h.finish()
        };
        let mut job = Job {
            tag,
            cid,
            dag,
            len: None,
            buf: Vec::new(),
            have: RangeSet::new(1024),
            asked: RangeSet::new(1024),
            probing: false,
            ever_asked: RangeSet::new(1024),
            started: false,
            also: Vec::new(),
            not_before: None,
            corrupt: 0,
            corrupt_since: None,
            last_progress: now,
            verifying: false,
            holder,
        };
        if let Some(l) = len {
            if l > self.cfg.max_chunk {
                self.completed.push_back(Completed { tag, cid, result: Err(ChunkError::TooLarge) });
                return;
            } // The buffer comes when the fetch starts, not while it waits in the queue.
            job.len = Some(l);
        }
        self.jobs.insert(id, job);
        self.order.push_back(id);
        self.by_cid.insert(*cid.id(), id);
    }
    /// Gives up a fetch (its owner went away): no completion for `tag`.
    pub fn cancel(&mut self, tag: u64) {
        let Some((&id, _)) = self.jobs.iter().find(|(_, j)| j.tag == tag || j.also.contains(&tag)) else {
            return;
        };
        let job = self.jobs.get_mut(&id).expect("found");
        if job.tag != tag {
            job.also.retain(|&t| t != tag);
            return;
        }
        if let Some(next) = job.also.pop() {
            job.tag = next;
            return;
        }
        let job = self.jobs.remove(&id).expect("found");
        self.order.retain(|&j| j != id);
        self.by_cid.remove(job.cid.id());
        let stale: Vec<u32> = self.outstanding.iter().filter(|(_, o)| o.job == id).map(|(&r, _)| r).collect();
        for r in stale {
            if let Some(o) = self.outstanding.remove(&r) {
                self.in_flight -= o.end - o.offset;
            }
        }
    }

    /// Chunks queued or in progress.
    pub fn pending(&self) -> usize {
        self.jobs.len()
    }

    /// Counters.
    pub fn stats(&self) -> FetchStats {
        self.stats
    }

    /// Window of outstanding bytes.
    pub fn window(&self) -> u64 {
        self.window as u64
    }

    /// Bytes requested and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// A finished fetch.
    pub fn poll_complete(&mut self) -> Option<Completed> {
        self.completed.pop_front()
    }

    /// An assembled chunk to hash (with [`FetchConfig::defer_verify`]).
    pub fn poll_verify(&mut self) -> Option<Verify> {
        self.to_verify.pop_front()
    }

    /// The outcome of hashing `v` (from [`Fetcher::poll_verify`]): the fetch completes, or is
    /// started over when the bytes are not the chunk. Answers for cancelled fetches are dropped.
    pub fn verified(&mut self, now: Instant, v: Verify, ok: bool) {
        match self.jobs.get_mut(&v.job) {
            Some(job) if job.verifying => job.verifying = false,
            _ => return,
        }
        self.settle(now, v.job, v.data, ok);
    }

    /// The next request to send, if the window allows one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Request<'_>> {
        if self.in_flight as f64 >= self.window {
            return None;
        }
        let size = self.request_size();
        let mut pick: Option<(u64, u64, u64)> = None;
        for &id in self.order.iter().take(self.cfg.max_active) {
            let job = &self.jobs[&id];
            if job.not_before.is_some_and(|t| now < t) {
                continue;
            }
            match job.len {
                None => {
                    if !job.probing {
                        pick = Some((id, 0, size));
                        break;
                    }
                }
                Some(len) => {
                    let len = len as u64;
                    // First byte neither held nor asked for.
                    let mut at = 0;
                    loop {
                        if let Some((_, e)) = job.have.range_at(at) {
                            at = e;
                            continue;
                        }
                        if let Some((_, e)) = job.asked.range_at(at) {
                            at = e;
                            continue;
                        }
                        break;
                    }
                    if at < len {
                        let mut end = (at + size).min(len);
                        // Stop at the next byte held or asked for.
                        for (s, _) in job.have.iter().chain(job.asked.iter()) {
                            if s > at {
                                end = end.min(s);
                            }
                        }
                        pick = Some((id, at, end));
                        break;
                    }
                }
            }
        }
        let (id, offset, end) = pick?;
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let job = self.jobs.get_mut(&id).expect("picked job exists");
        if !job.started {
            job.started = true;
            job.last_progress = now;
            if let Some(l) = job.len {
                job.buf = vec![0u8; l];
            }
        }
        job.not_before = None;
        let repeat = job.ever_asked.gaps(offset, end).map(|(s, e)| e - s).sum::<u64>() < end - offset;
        job.ever_asked.insert(offset, end);
        if job.len.is_none() {
            job.probing = true;
        } else {
            job.asked.insert(offset, end);
        }
        let holder = job.holder;
        let snap = self.model.on_send(now, self.in_flight);
        self.outstanding
            .insert(request_id, Outstanding { job: id, holder, offset, end, sent_at: now, repeat, snap });
        self.in_flight += end - offset;
        self.stats.requests_sent += 1;
        if repeat {
            self.stats.requests_repeated += 1;
        }
        Some(Request {
            dag: &job.dag,
            repr: ChunkRepr::Request { request_id, offset: offset as u32, length: (end - offset) as u32 },
        })
    }

    /// When [`Fetcher::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rto = self.rtt.rto_backoff(self.backoff);
        let oldest = self.outstanding.values().map(|o| o.sent_at).min().map(|t| self.timer_base(t) + rto);
        let stall = self
            .jobs
            .values()
            .filter(|j| j.started && !j.verifying)
            .map(|j| j.last_progress + self.cfg.stall_timeout)
            .min();
        let busy = self.jobs.values().filter_map(|j| j.not_before).min();
        [oldest, stall, busy].into_iter().flatten().min()
    }

    /// Fires timeouts due at `now`: after an RTO without new bytes the oldest request is asked
    /// again (and the window shrinks); chunks stalled for the stall timeout fail.
    pub fn handle_timeout(&mut self, now: Instant) {
        let rto = self.rtt.rto_backoff(self.backoff);
        // The timer of every request restarts with each new byte from anywhere (as TCP's
        // restarts on each new acknowledgement), so requests queued at a holder that is still
        // answering are never given up on. When it fires, nothing has come for an RTO: every
        // request it covers is lost, as TCP deems its whole flight lost on a retransmission
        // timeout. (Giving up on only the oldest left the rest holding the window after it had
        // shrunk: one request per backed-off RTO, and the chunk most in need stalled.)
        let expired: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| self.timer_base(o.sent_at) + rto <= now)
            .map(|(&id, _)| id)
            .collect();
        if !expired.is_empty() {
            self.stats.timeouts += 1;
            self.backoff = (self.backoff + 1).min(6);
            for id in expired {
                self.forget_request(id);
            }
            self.on_loss(now);
            // The next timer runs from now.
            self.last_piece_at = Some(now);
        }
        let stalled: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.started && !j.verifying && j.last_progress + self.cfg.stall_timeout <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in stalled {
            self.finish(id, Err(ChunkError::TimedOut));
        }
    }
    /// Where a request sent at `sent` times from: its sending or the last new bytes, if later.
    fn timer_base(&self, sent: Instant) -> Instant {
        self.last_piece_at.map_or(sent, |t| t.max(sent))
    }

    /// Drops an outstanding request: its unanswered bytes become askable again. Its late
    /// answers are still taken (within its range) for a while.
    fn forget_request(&mut self, id: u32) {
        let Some(o) = self.outstanding.remove(&id) else { return };
        self.in_flight -= o.end - o.offset;
        self.retired.insert(id, o);
        self.retired_order.push_back(id);
        while self.retired_order.len() > RETIRED_MEMORY {
            if let Some(old) = self.retired_order.pop_front() {
                self.retired.remove(&old);
            }
        }
        if let Some(job) = self.jobs.get_mut(&o.job) {
            if job.len.is_none() {
                job.probing = false;
            } else {
                // Rebuild the asked set without this request's range (other outstanding
                // requests of the job keep theirs).
                job.asked.clear();
                for other in self.outstanding.values().filter(|x| x.job == o.job) {
                    job.asked.insert(other.offset, other.end);
                }
            }
        }
    }

    fn on_loss(&mut self, now: Instant) {
        // The path model's window does not follow losses; Reno's halves, once per round trip.
        if self.cfg.congestion == Congestion::Model || self.recovery_until.is_some_and(|t| now < t) {
            return;
        }
        self.ssthresh = (self.window / 2.0).max(2.0 * MIN_REQUEST as f64);
        self.window = self.ssthresh;
        self.recovery_until = Some(now + self.rtt.srtt());
    }

    /// Takes a CHUNK response or negative reply whose source intent is `cid`.
    pub fn handle_response(&mut self, now: Instant, cid: &Xid, repr: &ChunkRepr<'_>) {
        match *repr {
            ChunkRepr::Nack { request_id, reason } => {
                let Some(o) = self.outstanding.get(&request_id).copied() else { return };
                if self.jobs.get(&o.job).is_none_or(|j| j.cid != *cid) {
                    return;
                }
                self.forget_request(request_id);
                match reason {
                    NackReason::Busy => {
                        // Ask again after a retransmission timeout, not at once.
                        let wait = self.rtt.rto();
                        if let Some(j) = self.jobs.get_mut(&o.job) {
                            j.not_before = Some(now + wait);
                        }
                    }
                    NackReason::BadRange => self.finish(o.job, Err(ChunkError::BadRange)),
                    _ => self.finish(o.job, Err(ChunkError::NotFound)),
                }
            }
            ChunkRepr::Response { request_id, offset, total_len, data, .. } => {
                self.stats.pieces_received += 1;
                let before = self.model.delivered();
                self.take_piece(now, cid, request_id, u64::from(offset), total_len as usize, data);
                self.model.on_ack_end(now);
                if self.cfg.congestion == Congestion::Model {
                    let acked = self.model.delivered() - before;
                    let w = self.model.cwnd(self.window as u64, acked, MIN_REQUEST);
                    self.window = (w as f64).min(self.cfg.max_window as f64).max(2.0 * MIN_REQUEST as f64);
                }
            }
            ChunkRepr::Request { .. } => {}
        }
    }

    fn take_piece(
        &mut self,
        now: Instant,
        cid: &Xid,
        request_id: u32,
        offset: u64,
        total: usize,
        data: &[u8],
    ) {
        let Some(&job_id) = self.by_cid.get(cid.id()) else {
            self.stats.pieces_refused += 1;
            return;
        };
        // Only answers to our own requests for this chunk, within what they asked, are taken:
        // anyone can send a piece, but not guess a request id and its range.
        let asked = self.outstanding.get(&request_id).or_else(|| self.retired.get(&request_id)).copied();
        let in_range = asked
            .is_some_and(|o| o.job == job_id && offset >= o.offset && offset + data.len() as u64 <= o.end);
        if !in_range {
            self.stats.pieces_refused += 1;
            return;
        }
        let job = self.jobs.get_mut(&job_id).expect("indexed job exists");
        if job.verifying {
            // Every byte is already here: a late copy.
            self.stats.duplicate_pieces += 1;
            return;
        }
        match job.len {
            None => {
                if total > self.cfg.max_chunk {
                    self.finish(job_id, Err(ChunkError::TooLarge));
                    return;
                }
                job.len = Some(total);
                job.buf = vec![0u8; total];
                job.probing = false;
                // The probing request's range now counts as asked.
                for o in self.outstanding.values().filter(|o| o.job == job_id) {
                    job.asked.insert(o.offset, o.end.min(total as u64));
                }
            }
            Some(len) if len != total => {
                self.stats.pieces_refused += 1;
                return;
            }
            Some(_) => {}
        }
        let end = offset + data.len() as u64;
        if end > total as u64 {
            self.stats.pieces_refused += 1;
            return;
        }
        if job.have.contains(offset, end) && !data.is_empty() {
            self.stats.duplicate_pieces += 1;
        } else if !data.is_empty() {
            job.buf[offset as usize..end as usize].copy_from_slice(data);
            job.have.insert(offset, end);
            if let Some(o) = asked {
                self.model.on_delivered(now, end - offset, o.sent_at, o.snap);
                // A request's first piece times the path (its last, the path and the burst):
                // the model's RTT, even when the request's tail is lost.
                if offset == o.offset && !o.repeat {
                    self.model.on_rtt(now, now.duration_since(o.sent_at));
                }
            }
            job.last_progress = now;
            self.last_piece_at = Some(now);
            // New bytes: the path works, whatever became of the request's tail (TCP resets its
            // backoff on every new acknowledgement, not when a whole burst is acknowledged).
            self.backoff = 0;
        }
        // The request this answers: done when all its bytes are held.
        if let Some(o) = self.outstanding.get(&request_id).copied().filter(|o| o.job == job_id) {
            let o_end = o.end.min(total as u64);
            // A holder answers its requests in order, piece after piece: any piece of this one
            // says what was asked of it a reordering window earlier and is still missing is
            // lost; its last piece says the same of its own gaps. (Waiting for whole requests
            // to complete left lossy paths to the timeout: at 10 % loss a request of 46 pieces
            // arrives whole less than one time in a hundred.)
            if !job.have.contains(o.offset, o_end) && total != 0 {
                self.detect_lost(now, o.holder, o.sent_at);
                if end >= o_end {
                    self.forget_request(request_id);
                }
            } else {
                self.outstanding.remove(&request_id);
                self.in_flight -= o.end - o.offset;
                if !o.repeat {
                    self.rtt.sample(now.duration_since(o.sent_at));
                }
                self.backoff = 0;
                self.grow(o.end - o.offset);
                self.detect_lost(now, o.holder, o.sent_at);
            }
        }
        let job = &self.jobs[&job_id];
        if job.have.contains(0, total as u64) {
            self.complete(now, job_id);
        }
    }

    /// Bytes asked for per request: a request is answered by a burst of pieces at the
    /// responder's line rate, and a burst longer than a bottleneck's queue loses its tail every
    /// time. So requests are a quarter of the window, at most the configured size and at least
    /// [`MIN_REQUEST`]: after losses the window shrinks, and the bursts with it.
    fn request_size(&self) -> u64 {
        let max = u64::from(self.cfg.request_size.max(1));
        ((self.window / 4.0) as u64).clamp(MIN_REQUEST.min(max), max)
    }

    fn grow(&mut self, bytes: u64) {
        if self.recovery_until.is_some() || self.cfg.congestion == Congestion::Model {
            return;
        }
        let b = bytes as f64;
        if self.window < self.ssthresh {
            self.window += b;
        } else {
            self.window += b * f64::from(self.cfg.request_size.max(1)) / self.window;
        }
        self.window = self.window.min(self.cfg.max_window as f64);
    }

    /// Requests to the same holder (which answers in the order asked) sent a reordering window
    /// before `sent`, which just completed, and still incomplete: their pieces are lost; ask
    /// again for what they miss.
    fn detect_lost(&mut self, now: Instant, holder: u64, sent: Instant) {
        if self.recovery_until.is_some_and(|t| now >= t) {
            self.recovery_until = None;
        }
        let reo = self
            .rtt
            .min_rtt()
            .map_or(Duration::from_micros(500), |m| (m / 4).max(Duration::from_micros(500)));
        let Some(threshold) = sent.checked_sub(reo) else { return };
        let lost: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.holder == holder && o.sent_at < threshold)
            .map(|(&id, _)| id)
            .collect();
        if lost.is_empty() {
            return;
        }
        for id in lost {
            self.forget_request(id);
        }
        self.on_loss(now);
    }

    fn complete(&mut self, now: Instant, job_id: u64) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let data = std::mem::take(&mut job.buf);
        if !self.cfg.defer_verify {
            let ok = Xid::cid_of(&data) == job.cid;
            self.settle(now, job_id, data, ok);
            return;
        }
        // Out for hashing: the job leaves the active ones (the next chunk's requests go out
        // meanwhile) and its outstanding requests are done with.
        job.verifying = true;
        let cid = job.cid;
        self.order.retain(|&j| j != job_id);
        let stale: Vec<u32> =
            self.outstanding.iter().filter(|(_, o)| o.job == job_id).map(|(&id, _)| id).collect();
        for id in stale {
            if let Some(o) = self.outstanding.remove(&id) {
                self.in_flight -= o.end - o.offset;
            }
        }
        self.to_verify.push_back(Verify { job: job_id, cid, data });
    }

    /// Ends a fetch whose bytes were hashed: `ok` when they are the chunk.
    fn settle(&mut self, now: Instant, job_id: u64, data: Vec<u8>, ok: bool) {
        if ok {
            self.stats.chunks_completed += 1;
            self.stats.bytes_completed += data.len() as u64;
            self.finish(job_id, Ok(data));
            return;
        }
        let Some(job) = self.jobs.get_mut(&job_id) else { return };
        // Wrong bytes: never handed out. The whole chunk is fetched again, after a pause that
        // doubles each time (a holder that keeps sending wrong bytes is not hammered), until
        // the stall timeout has passed since the first wrong copy: only then does it fail.
        self.stats.corrupt_chunks += 1;
        let since = *job.corrupt_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.cfg.stall_timeout {
            self.finish(job_id, Err(ChunkError::Corrupt));
            return;
        }
        job.corrupt += 1;
        let pause = self.cfg.min_rto.saturating_mul(1 << job.corrupt.min(16)).min(self.cfg.max_rto);
        job.not_before = Some(now + pause);
        job.have.clear();
        job.asked.clear();
        job.ever_asked.clear();
        job.len = None;
        job.buf = Vec::new();
        job.probing = false;
        job.last_progress = now;
        let stale: Vec<u32> =
            self.outstanding.iter().filter(|(_, o)| o.job == job_id).map(|(&id, _)| id).collect();
        for id in stale {
            self.forget_request(id);
        }
        if !self.order.contains(&job_id) {
            self.order.push_front(job_id);
        }
    }

    fn finish(&mut self, job_id: u64, result: Result<Vec<u8>, ChunkError>) {
        let Some(job) = self.jobs.remove(&job_id) else { return };
        self.order.retain(|&j| j != job_id);
        if self.by_cid.get(job.cid.id()) == Some(&job_id) {
            self.by_cid.remove(job.cid.id());
        }
        let stale: Vec<u32> =
            self.outstanding.iter().filter(|(_, o)| o.job == job_id).map(|(&id, _)| id).collect();
        for id in stale {
            if let Some(o) = self.outstanding.remove(&id) {
                self.in_flight -= o.end - o.offset;
            }
        }
        for tag in job.also {
            self.completed.push_back(Completed { tag, cid: job.cid, result: result.clone() });
        }
        self.completed.push_back(Completed { tag: job.tag, cid: job.cid, result });
    }
}
