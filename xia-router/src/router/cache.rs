//! The on-path chunk cache: CHUNK response pieces forwarded through the router are put
//! together, in memory the cache then keeps, into whole chunks; requests for a cached CID are
//! answered from the cache (the chunk hashed against its CID when first asked for), piece by
//! piece as the ports have room.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Instant;

use xia_core::dag::Dag;
use xia_core::select::{select_from_entry, Selection};
use xia_core::transport::chunk::{ContentStore, ServeJob};
use xia_core::transport::ranges::RangeSet;
use xia_core::wire::chunk::{self as chunk_wire, ChunkRepr};
use xia_core::wire::xip::{self, NextHeader, XipRepr};
use xia_core::wire::{ethernet, integrity};
use xia_core::xid::{Principal, Xid};

use super::Router;

impl Router {
    /// Resizes the chunk cache to `bytes` (0 turns it off); what it held is dropped, as are
    /// chunks being put together.
    pub fn set_cache_bytes(&mut self, bytes: usize) {
        self.cfg.cache_bytes = bytes;
        self.cache = (bytes > 0).then(|| ContentStore::new(bytes, self.cfg.max_chunk));
        self.unverified.clear();
        self.assembling.clear();
        self.assembling_bytes = 0;
    }

    /// The chunk cache's size in bytes (0: off) and the bytes it holds.
    pub fn cache_usage(&self) -> (usize, usize) {
        (self.cfg.cache_bytes, self.cache.as_ref().map_or(0, ContentStore::bytes))
    }

    /// The next piece of the oldest answer from the cache, sized for its port (answers done
    /// are dropped).
    pub(super) fn next_cache_piece(&mut self) -> Option<(usize, Vec<u8>)> {
        loop {
            let s = self.serving.front_mut()?;
            let hlen = s.header.len();
            let room =
                self.ports[s.port].mtu.saturating_sub(hlen - ethernet::HEADER_LEN + chunk_wire::HEADER_LEN);
            let Some(piece) = s.job.next_piece(room) else {
                self.serving.pop_front();
                continue;
            };
            let n = piece.buffer_len();
            let mut f = vec![0u8; hlen + n];
            f[..hlen].copy_from_slice(&s.header);
            if piece.emit(&mut f[hlen..]).is_err() {
                self.serving.pop_front();
                continue;
            }
            // The XIP payload length, now that the piece's is known.
            f[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4].copy_from_slice(&(n as u16).to_be_bytes());
            let port = s.port;
            if s.job.is_done() {
                self.serving.pop_front();
            }
            integrity::seal_frame(&mut f);
            self.stats.cache_pieces_out += 1;
            self.stats.originated += 1;
            return Some((port, f));
        }
    }

    /// A CHUNK request whose CID this router has cached: answered from the cache, from a
    /// content DAG of this router (the requester matches answers by CID and request id).
    pub(super) fn serve_from_cache(&mut self, x: &XipRepr, payload: &[u8]) {
        let Ok(c) = chunk_wire::Packet::new_checked(payload).and_then(|q| ChunkRepr::parse(&q)) else {
            self.stats.drop_local += 1;
            return;
        };
        let cid = *x.dst.intent();
        let data = match (&c, self.cache.as_mut().and_then(|s| s.get(&cid))) {
            (ChunkRepr::Request { .. }, Some(d)) => d,
            _ => {
                self.stats.drop_local += 1;
                return;
            }
        };
        // Hashed on first use, not on the way: the traffic that fills the cache pays a copy,
        // and only chunks asked for again pay the hash. A bad one is dropped with its request
        // (the requester asks again, and finds the way to the publisher).
        if self.unverified.remove(cid.id()).is_some() && Xid::cid_of(&data) != cid {
            self.stats.cache_chunks_corrupt += 1;
            if let Some(c) = self.cache.as_mut() {
                c.remove(&cid);
            }
            return;
        }
        let Ok(job) = ServeJob::new(data, &c, self.cfg.max_serve) else {
            self.stats.drop_local += 1;
            return;
        };
        let mut to = x.src.clone();
        to.clear_visited();
        let Ok(Selection::Forward { hop: (port, mac), .. }) = select_from_entry(&to, |x| self.lookup(x))
        else {
            self.stats.drop_unreachable += 1;
            return;
        };
        let Ok(src) = Dag::content(cid, self.ad, self.hid) else { return };
        let Some(header) = self.build_frame(port, mac, NextHeader::Chunk, &to, &src, &[]) else { return };
        if self.serving.len() >= MAX_SERVING {
            self.stats.drop_queue_full += 1;
            return;
        }
        self.stats.cache_hits += 1;
        self.serving.push_back(Serve { port, header, job });
    }

    /// A CHUNK packet being forwarded: a response's piece goes into the chunk it belongs to,
    /// which is cached once complete and verified against its CID.
    pub(super) fn observe_chunk(&mut self, now: Instant, packet: &[u8]) {
        let p = xip::Packet::new_unchecked(packet);
        let Ok(ChunkRepr::Response { offset, total_len, no_store, data, .. }) =
            chunk_wire::Packet::new_checked(p.payload()).and_then(|q| ChunkRepr::parse(&q))
        else {
            return;
        };
        if no_store {
            // Its publisher wants no copy kept on the way.
            self.stats.cache_pieces_no_store += 1;
            return;
        }
        let Some(cid) = p.src_intent() else { return };
        if cid.principal() != Principal::Cid {
            return;
        }
        // A damaged piece goes on (its receiver drops it) but is not kept.
        if integrity::verify(packet).is_err() {
            self.stats.bad_check += 1;
            return;
        }
        self.stats.cache_pieces_seen += 1;
        let total = total_len as usize;
        let (start, end) = (offset as usize, offset as usize + data.len());
        if total == 0
            || total > self.cfg.max_chunk
            || end > total
            || self.cache.as_ref().is_some_and(|c| c.contains(&cid))
        {
            return;
        }
        if !self.assembling.contains_key(cid.id()) {
            // Room for it: the oldest assemblies go first.
            while self.assembling_bytes + total > self.cfg.assembly_bytes
                || self.assembling.len() >= MAX_ASSEMBLIES
            {
                let Some((&old, _)) = self.assembling.iter().min_by_key(|(_, a)| a.touched) else { break };
                if let Some(a) = self.assembling.remove(&old) {
                    self.assembling_bytes -= a.total;
                    self.stats.cache_assemblies_dropped += 1;
                }
            }
            if self.assembling_bytes + total > self.cfg.assembly_bytes {
                return;
            }
            self.assembling_bytes += total;
            self.assembling.insert(
                *cid.id(),
                Assembly { data: Arc::new_uninit_slice(total), total, have: RangeSet::new(64), touched: now },
            );
        }
        let Some(a) = self.assembling.get_mut(cid.id()) else { return };
        if a.total != total {
            // Pieces disagree on the chunk's length: not a chunk worth keeping.
            self.assembling_bytes -= a.total;
            self.assembling.remove(cid.id());
            return;
        }
        a.touched = now;
        // Written straight into the memory the cache will keep: no copy when it completes.
        let Some(buf) = Arc::get_mut(&mut a.data) else { return };
        let dst = &mut buf[start..end];
        // SAFETY: `dst` is `data.len()` bytes of memory we own (a `MaybeUninit<u8>` has the
        // layout of a `u8`), and it cannot overlap `data` (a frame in the receive ring).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst.as_mut_ptr().cast::<u8>(), data.len()) };
        a.have.insert(start as u64, end as u64);
        if !a.have.contains(0, total as u64) {
            return;
        }
        let Some(a) = self.assembling.remove(cid.id()) else { return };
        self.assembling_bytes -= a.total;
        // SAFETY: every byte of 0..total lies in a range of `have`, and a range goes into
        // `have` only after its bytes were copied in (above; an insert refused for the range
        // limit records nothing).
        let data = unsafe { a.data.assume_init() };
        if let Some(c) = self.cache.as_mut() {
            c.insert_verified(cid, data);
            if self.unverified.len() >= 4096 {
                // Forget chunks the cache evicted since.
                let cache = &*c;
                self.unverified.retain(|id, _| cache.contains(&Xid::new(Principal::Cid, *id)));
            }
            self.unverified.insert(*cid.id(), ());
            self.stats.cache_chunks_stored += 1;
        }
    }
}

/// A chunk being put together from the pieces passing through.
#[derive(Debug)]
pub(super) struct Assembly {
    /// The chunk's memory, written piece by piece (the bytes of `have` are initialized).
    data: Arc<[MaybeUninit<u8>]>,
    total: usize,
    have: RangeSet,
    touched: Instant,
}

/// Answers to a request, from the cache.
#[derive(Debug)]
pub(super) struct Serve {
    port: usize,
    /// Ethernet and XIP headers of every piece (the payload length filled per piece).
    header: Vec<u8>,
    job: ServeJob,
}

/// Chunks being put together at once, at most.
const MAX_ASSEMBLIES: usize = 256;

/// Requests being answered from the cache at once, at most.
const MAX_SERVING: usize = 256;
