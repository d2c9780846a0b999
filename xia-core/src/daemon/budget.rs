//! The memory applications' unfinished messages may hold, across all their connections.
//!
//! Every byte the daemon buffers for a request it has not handled yet is charged here: a
//! connection's read-ahead buffer, the pieces of a big payload (a published chunk) as they come,
//! and that chunk while it is being named on the hashing thread. Each allocation is charged
//! before it is made. A payload gets a buffer of the length it announces only while the budget
//! has room to spare (nobody waits, and such buffers hold at most half of it); otherwise its
//! storage grows with the bytes received. What a connection cannot get room for it waits for:
//!
//! - a connection that cannot get room is not read (its socket buffer fills, and then its
//!   writes block: back-pressure), and is read again when room frees, in the order they came;
//! - each connection's first [`SHARE`] bytes may use the whole budget, anything beyond (big
//!   payloads, deep read-ahead) only the budget less a reserve of an eighth: big messages cannot
//!   keep small requests (pings, stats, fetches) from being read;
//! - one connection at a time, the finisher, may go past the budget to complete the message it
//!   is receiving (at most the largest payload): when every holder waits for room, one still
//!   completes: messages being received never all wait on each other;
//! - connections whose unfinished message makes no progress are closed (the daemon decides
//!   when, [`super::IpcLimits::idle`], sooner while some wait); their room goes to those that
//!   wait.
//!
//! The memory held for incoming messages is thus at most the budget, plus one message of the
//! finisher, plus one chunk being copied on the hashing thread.

use std::collections::VecDeque;

/// What a connection holds before the reserve of the budget is out of its reach: a read-ahead
/// buffer's first allocation.
pub(super) const SHARE: usize = 64 << 10;

/// The budget and who waits for it.
#[derive(Debug)]
pub(super) struct InBudget {
    limit: usize,
    /// What may be used beyond connections' shares.
    bulk_limit: usize,
    used: usize,
    peak: usize,
    /// The connection allowed past the limits until its message is complete.
    finisher: Option<u64>,
    /// What the finisher took as finisher (not counted against the others' limits).
    finisher_extra: usize,
    waiters: VecDeque<Waiter>,
    /// Room was given back since the waiters were last looked at.
    freed: bool,
    /// Times a connection had to wait for room.
    pub(super) waits: u64,
    /// Connections closed because their unfinished message made no progress.
    pub(super) evicted_idle: u64,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    id: u64,
    /// Bytes it asked for.
    need: usize,
    /// Beyond its share.
    bulk: bool,
}

impl InBudget {
    /// A budget of `limit` bytes.
    pub(super) fn new(limit: usize) -> InBudget {
        InBudget {
            limit,
            bulk_limit: limit - limit / 8,
            used: 0,
            peak: 0,
            finisher: None,
            finisher_extra: 0,
            waiters: VecDeque::new(),
            freed: false,
            waits: 0,
            evicted_idle: 0,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub(super) fn used(&self) -> usize {
        self.used
    }

    /// The most ever charged at once.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }

    /// Connections waiting for room.
    pub(super) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Someone waits for room: connections that hold room and make no progress go sooner.
    pub(super) fn pressed(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Room for connection `id`, which holds `held` bytes, to hold `more`: true if given (and
    /// charged). Refused, the connection should [`InBudget::wait`].
    pub(super) fn take(&mut self, id: u64, held: usize, more: usize) -> bool {
        let bulk = held + more > SHARE;
        let cap = if bulk { self.bulk_limit } else { self.limit };
        let others = self.used - self.finisher_extra;
        if self.finisher == Some(id) {
            self.finisher_extra += more;
        } else if others + more <= cap {
        } else if bulk && self.finisher.is_none() {
            self.finisher = Some(id);
            self.finisher_extra = more;
        } else {
            return false;
        }
        self.used += more;
        self.peak = self.peak.max(self.used);
        true
    }

    /// Room to receive a payload of `len` bytes into a buffer of its own, allocated whole: only
    /// while the budget has room to spare (nobody waits, and such buffers hold at most half of
    /// the budget beyond shares: announcements alone cannot take it all).
    pub(super) fn take_whole(&mut self, len: usize) -> bool {
        if !self.waiters.is_empty() || self.used - self.finisher_extra + len > self.bulk_limit / 2 {
            return false;
        }
        self.charge(len);
        true
    }

    /// Charges `n` bytes without asking (an allocation that came out a little bigger than asked).
    pub(super) fn charge(&mut self, n: usize) {
        self.used += n;
        self.peak = self.peak.max(self.used);
    }

    /// Gives `n` bytes back.
    pub(super) fn give_back(&mut self, n: usize) {
        debug_assert!(n <= self.used, "giving back {n} of {} bytes", self.used);
        self.used = self.used.saturating_sub(n);
        self.finisher_extra = self.finisher_extra.min(self.used);
        if n > 0 {
            self.freed = true;
        }
    }

    /// Connection `id` finished a message (or has none any more): it is no longer the finisher.
    pub(super) fn done(&mut self, id: u64) {
        if self.finisher == Some(id) {
            self.finisher = None;
            self.finisher_extra = 0;
            self.freed = true;
        }
    }

    /// Connection `id` waits for `need` bytes more than the `held` it has.
    pub(super) fn wait(&mut self, id: u64, held: usize, need: usize) {
        if self.waiters.iter().all(|w| w.id != id) {
            self.waiters.push_back(Waiter { id, need, bulk: held + need > SHARE });
            self.waits += 1;
        }
    }

    /// Connection `id` is gone.
    pub(super) fn forget(&mut self, id: u64) {
        self.done(id);
        self.waiters.retain(|w| w.id != id);
    }

    /// The waiters that the room given back since the last call lets go on, in the order they
    /// came (they leave the list; one that finds no room after all waits again, at the end).
    pub(super) fn ready(&mut self) -> Vec<u64> {
        if !std::mem::take(&mut self.freed) || self.waiters.is_empty() {
            return Vec::new();
        }
        let mut used = self.used - self.finisher_extra;
        let mut finisher_free = self.finisher.is_none();
        let (limit, bulk_limit) = (self.limit, self.bulk_limit);
        let mut go = Vec::new();
        self.waiters.retain(|w| {
            let cap = if w.bulk { bulk_limit } else { limit };
            let fits = used + w.need <= cap;
            if fits || (w.bulk && finisher_free) {
                if fits {
                    used += w.need;
                } else {
                    finisher_free = false;
                }
                go.push(w.id);
                false
            } else {
                true
            }
        });
        go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn shares_reach_the_reserve_bulk_does_not() {
        let mut b = InBudget::new(8 * MIB);
        // Bulk up to 7 MiB (the reserve is an eighth).
        assert!(b.take(1, SHARE, 3 * MIB));
        assert!(b.take(2, SHARE, 3 * MIB));
        assert!(b.take(3, SHARE, MIB));
        assert_eq!(b.used(), 7 * MIB);
        // Connection 4 becomes the finisher: it may go on to complete its message.
        assert!(b.take(4, SHARE, MIB));
        assert!(b.take(4, SHARE + MIB, 2 * MIB));
        // Nobody else gets bulk room now.
        assert!(!b.take(5, SHARE, MIB));
        b.wait(5, SHARE, MIB);
        assert!(!b.take(6, SHARE, 64 << 10));
        b.wait(6, SHARE, 64 << 10);
        // A share still comes out of the reserve.
        assert!(b.take(7, 0, SHARE));
        assert_eq!(b.waits, 2);
        assert_eq!(b.peak(), 10 * MIB + SHARE);
        // Nothing freed yet: nobody to wake.
        assert!(b.ready().is_empty());
        // The finisher completes and hands its bytes on: the bulk is still full, so the first
        // waiter goes on as the next finisher; the second waits on.
        b.done(4);
        b.give_back(3 * MIB);
        assert_eq!(b.ready(), vec![5]);
        assert!(b.take(5, SHARE, MIB));
        assert_eq!(b.waiting(), 1);
        // 1 gives its room back: room for 6.
        b.give_back(3 * MIB);
        assert_eq!(b.ready(), vec![6]);
        assert!(b.take(6, SHARE, 64 << 10));
        b.done(5);
        b.forget(7);
        for n in [3 * MIB, MIB, SHARE, MIB, 64 << 10] {
            b.give_back(n);
        }
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn waiters_go_in_order_as_room_frees_and_the_finisher_slot_passes_on() {
        let mut b = InBudget::new(8 * MIB);
        assert!(b.take(1, SHARE, 7 * MIB));
        // 2 becomes the finisher; 3 and 4 wait.
        assert!(b.take(2, SHARE, MIB));
        for id in [3, 4] {
            assert!(!b.take(id, SHARE, MIB));
            b.wait(id, SHARE, MIB);
            // Waiting twice counts once.
            b.wait(id, SHARE, MIB);
        }
        assert_eq!((b.waiting(), b.waits), (2, 2));
        // The finisher leaves: the first waiter may take its place.
        b.forget(2);
        b.give_back(MIB);
        assert_eq!(b.ready(), vec![3]);
        assert!(b.take(3, SHARE, MIB));
        // 1 gives back room for one more: 4.
        b.give_back(MIB);
        assert_eq!(b.ready(), vec![4]);
        assert!(b.take(4, SHARE, MIB));
        assert_eq!(b.waiting(), 0);
    }
}
