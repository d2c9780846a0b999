//! CHUNK: the content this host publishes and serves, and the fetches it runs for its
//! applications.

use std::sync::Arc;
use std::time::Instant;

use crate::dag::Dag;
use crate::transport::chunk::{CachePolicy, ServeJob, Verify};
use crate::wire::chunk::{self as chunk_wire, ChunkRepr, NackReason};
use crate::wire::xip::{NextHeader, XipRepr};
use crate::wire::{ethernet, integrity};
use crate::xid::Xid;

use super::*;

#[derive(Debug)]
pub(super) struct ServeTask {
    pub(super) job: ServeJob,
    pub(super) header: Vec<u8>,
    /// The requester is this very host.
    pub(super) local: bool,
}

impl Host {
    pub(super) fn handle_chunk(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(c) = chunk_wire::Packet::new_checked(payload).and_then(|p| ChunkRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        match c {
            ChunkRepr::Request { request_id, .. } => {
                let cid = *x.dst.intent();
                let mut reply_to = x.src.clone();
                reply_to.clear_visited();
                let reason = match self.store.get(&cid) {
                    None => Some(NackReason::NotFound),
                    Some(_) if self.serving.len() >= self.cfg.max_serving => Some(NackReason::Busy),
                    Some(data) => match ServeJob::new(data, &c, self.cfg.max_serve) {
                        Err(r) => Some(r),
                        Ok(job) => {
                            let job = job.with_policy(self.store.policy(&cid));
                            let src = self.content_dag(cid);
                            match self.frame_for(NextHeader::Chunk, &reply_to, &src, &[]) {
                                Some((header, hop @ (Some(Hop::Mac(_)) | None))) => {
                                    self.serving.push_back(ServeTask { job, header, local: hop.is_none() });
                                    self.stats.chunk_requests_served += 1;
                                }
                                // The requester is on the link but not resolved yet: served
                                // once it is.
                                Some((header, Some(Hop::Resolve(hid)))) => {
                                    let limit = self.cfg.resolve_queue;
                                    let p =
                                        self.pending.entry(*hid.id()).or_insert_with(|| Pending::new(now, 0));
                                    if p.queued() >= limit {
                                        self.stats.drop_queue_full += 1;
                                    } else {
                                        p.serve.push(ServeTask { job, header, local: false });
                                        self.stats.chunk_requests_served += 1;
                                        if p.tries == 0 {
                                            p.tries = 1;
                                            p.asked_at = now;
                                            self.send_xarp_request(now, hid);
                                        }
                                    }
                                }
                                None => self.stats.drop_unreachable += 1,
                            }
                            None
                        }
                    },
                };
                if let Some(reason) = reason {
                    let nack = ChunkRepr::Nack { request_id, reason };
                    let mut buf = vec![0u8; nack.buffer_len()];
                    if nack.emit(&mut buf).is_ok() {
                        let src = self.content_dag(cid);
                        if self.send_packet(now, NextHeader::Chunk, &reply_to, &src, &buf) {
                            self.stats.chunk_nacks_out += 1;
                        }
                    }
                }
            }
            ChunkRepr::Response { .. } | ChunkRepr::Nack { .. } => {
                self.stats.chunk_pieces_in += 1;
                let cid = *x.src.intent();
                self.fetcher.handle_response(now, &cid, &c);
                self.drain_fetches();
            }
        }
    }

    pub(super) fn drain_fetches(&mut self) {
        while let Some(c) = self.fetcher.poll_complete() {
            if let Some((owner, tag)) = self.fetch_tags.remove(&c.tag) {
                self.events.push_back(HostEvent::ChunkDone { owner, tag, cid: c.cid, result: c.result });
            }
        }
    }

    pub(super) fn transmit_serving(&mut self, buf: &mut [u8]) -> Option<usize> {
        let max = (ethernet::HEADER_LEN + self.cfg.mtu).min(buf.len());
        while let Some(task) = self.serving.front_mut() {
            let hlen = task.header.len();
            let room = max.saturating_sub(hlen + chunk_wire::HEADER_LEN);
            if room == 0 {
                self.serving.pop_front();
                continue;
            }
            let Some(piece) = task.job.next_piece(room) else {
                self.serving.pop_front();
                continue;
            };
            let n = piece.buffer_len();
            if piece.emit(&mut buf[hlen..hlen + n]).is_err() {
                self.serving.pop_front();
                continue;
            }
            buf[..hlen].copy_from_slice(&task.header);
            buf[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
                .copy_from_slice(&(n as u16).to_be_bytes());
            // The header template came without the piece: the check goes in now.
            integrity::seal_frame(&mut buf[..hlen + n]);
            self.stats.chunk_pieces_out += 1;
            let local = task.local;
            if task.job.is_done() {
                self.serving.pop_front();
            }
            if local {
                self.loopback.push_back(buf[..hlen + n].to_vec());
                continue;
            }
            return Some(hlen + n);
        }
        None
    }

    pub(super) fn transmit_fetch(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let src = self.dag();
        loop {
            let req = self.fetcher.poll_transmit(now)?;
            let dag = req.dag.clone();
            let repr = req.repr;
            let mut payload = [0u8; chunk_wire::HEADER_LEN];
            repr.emit(&mut payload).ok()?;
            match self.frame_for(NextHeader::Chunk, &dag, &src, &payload) {
                Some((f, Some(Hop::Mac(_)))) => return copy_frame(buf, &f),
                Some((f, None)) => self.loopback.push_back(f),
                Some((f, Some(Hop::Resolve(hid)))) => self.await_resolution(now, hid, f),
                // Unreachable: the request times out and the fetch fails in due course.
                None => self.stats.drop_unreachable += 1,
            }
        }
    }

    /// Publishes a chunk; returns its CID.
    pub fn chunk_put(&mut self, data: Arc<[u8]>) -> Result<Xid, HostError> {
        Ok(self.store.put(data)?)
    }

    /// The content store: chunks held, bytes of them, bytes of those published here.
    pub fn store_usage(&self) -> (usize, usize, usize) {
        (self.store.len(), self.store.bytes(), self.store.published_bytes())
    }

    /// Whether a chunk of `len` bytes could be published (not too large for the store).
    pub fn chunk_check_size(&self, len: usize) -> Result<(), HostError> {
        Ok(self.store.check_size(len)?)
    }

    /// Publishes a chunk whose CID the caller computed (on another thread, so that hashing a
    /// big chunk does not hold up the host): `cid` must be the SHA-1 of `data`. `policy`: may
    /// the nodes on the way keep a copy.
    pub fn chunk_put_hashed(
        &mut self,
        cid: Xid,
        data: Arc<[u8]>,
        policy: CachePolicy,
    ) -> Result<Xid, HostError> {
        Ok(self.store.put_hashed(cid, data, policy)?)
    }

    /// Removes a published chunk.
    pub fn chunk_remove(&mut self, cid: &Xid) -> bool {
        self.store.remove(cid)
    }

    /// Fetches `cid` from `dag` for `owner`; a [`HostEvent::ChunkDone`] with `tag` follows.
    pub fn chunk_fetch(
        &mut self,
        now: Instant,
        owner: Handle,
        cid: Xid,
        dag: Dag,
        len: Option<usize>,
        tag: u64,
    ) {
        let t = self.next_fetch_tag;
        self.next_fetch_tag += 1;
        self.fetch_tags.insert(t, (owner, tag));
        self.fetcher.fetch(now, cid, dag, len, t);
        self.drain_fetches();
    }

    /// Gives up the fetch `tag` of `owner`: nothing more is said of it.
    pub fn chunk_cancel(&mut self, owner: Handle, tag: u64) {
        self.cancel_fetches(|o, t| o == owner && t == tag);
    }

    /// Gives up every fetch whose owner and tag `which` picks.
    pub(super) fn cancel_fetches(&mut self, mut which: impl FnMut(Handle, u64) -> bool) {
        let gone: Vec<u64> =
            self.fetch_tags.iter().filter(|(_, &(o, t))| which(o, t)).map(|(&t, _)| t).collect();
        for t in gone {
            self.fetch_tags.remove(&t);
            self.fetcher.cancel(t);
        }
    }

    /// An assembled chunk to hash, when fetches defer verification
    /// ([`FetchConfig::defer_verify`]): hash it anywhere (e.g. [`Verify::check`] on another
    /// thread) and hand the outcome to [`Host::chunk_verified`].
    pub fn poll_verify(&mut self) -> Option<Verify> {
        self.fetcher.poll_verify()
    }

    /// The outcome of hashing a chunk from [`Host::poll_verify`].
    pub fn chunk_verified(&mut self, now: Instant, v: Verify, ok: bool) {
        self.fetcher.verified(now, v, ok);
        self.drain_fetches();
    }

    /// A fresh handle for an owner of chunk fetches.
    pub fn fetch_owner(&mut self) -> Handle {
        self.handle()
    }
}
