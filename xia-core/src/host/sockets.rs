//! STREAM and DGRAM sockets: bindings of SIDs, connections, listeners and their backlogs,
//! datagram queues, and the segments and datagrams that belong to them.

use std::collections::VecDeque;
use std::time::Instant;

use crate::dag::Dag;
use crate::transport::stream::{Event as StreamEvent, Stream, StreamConfig};
use crate::wire::dgram::{self, DgramRepr};
use crate::wire::ethernet::{self, EthernetAddress};
use crate::wire::integrity;
use crate::wire::stream::{self as stream_wire, Flags, StreamRepr};
use crate::wire::xcmp::Unreachable;
use crate::wire::xip::{self, NextHeader, XipRepr};
use crate::xid::{Principal, Xid, SID_XHCP};

use super::*;

#[derive(Debug)]
pub(super) struct StreamSock {
    pub(super) conn: Stream,
    pub(super) local_sid: Xid,
    pub(super) remote: Dag,
    /// Ethernet + XIP header for its segments, the routing generation it was built for, and
    /// whether the peer is this very host.
    pub(super) header: Option<(Vec<u8>, u64, bool)>,
    pub(super) accepted_by: Option<Handle>,
}

#[derive(Debug)]
pub(super) struct Listener {
    pub(super) sid: Xid,
    pub(super) backlog: VecDeque<Handle>,
}

#[derive(Debug)]
pub(super) struct DgramSock {
    pub(super) sid: Xid,
    pub(super) queue: VecDeque<(Dag, Vec<u8>)>,
}

/// What a local SID is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Binding {
    Listener(Handle),
    Dgram(Handle),
    /// A client stream's ephemeral SID.
    Stream(Handle),
}

impl Host {
    pub(super) fn handle_dgram(
        &mut self,
        now: Instant,
        src_mac: EthernetAddress,
        x: &XipRepr,
        payload: &[u8],
    ) {
        let Ok(d) = dgram::Packet::new_checked(payload).and_then(|p| DgramRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        let sid = *x.dst.intent();
        if sid == SID_XHCP {
            self.handle_control(now, src_mac, d.payload);
            return;
        }
        let Some(Binding::Dgram(h)) = self.bindings.get(sid.id()).copied() else {
            self.stats.drop_no_socket += 1;
            self.send_unreachable(now, x, Unreachable::Intent, payload);
            return;
        };
        let limit = self.cfg.dgram_queue;
        let sock = self.dgrams.get_mut(&h).expect("bound socket exists");
        if sock.queue.len() >= limit {
            self.stats.drop_queue_full += 1;
            return;
        }
        let was_empty = sock.queue.is_empty();
        let mut from = x.src.clone();
        from.clear_visited();
        sock.queue.push_back((from, d.payload.to_vec()));
        self.stats.dgrams_in += 1;
        if was_empty {
            self.events.push_back(HostEvent::DgramReadable(h));
        }
    }

    /// A segment for established stream `h`.
    pub(super) fn stream_segment(&mut self, now: Instant, h: Handle, payload: &[u8]) {
        let Ok(seg) = stream_wire::Packet::new_checked(payload).and_then(|p| StreamRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        self.stats.segments_in += 1;
        if let Some(s) = self.streams.get_mut(&h) {
            s.conn.handle_segment(now, &seg);
        }
        self.drain_stream_events(h);
    }

    pub(super) fn handle_stream(&mut self, now: Instant, x: &XipRepr, payload: &[u8]) {
        let Ok(seg) = stream_wire::Packet::new_checked(payload).and_then(|p| StreamRepr::parse(&p)) else {
            self.stats.drop_bad_transport += 1;
            return;
        };
        self.stats.segments_in += 1;
        let local = *x.dst.intent();
        let remote = *x.src.intent();
        if let Some(&h) = self.stream_index.get(&(*local.id(), *remote.id())) {
            if let Some(s) = self.streams.get_mut(&h) {
                s.conn.handle_segment(now, &seg);
            }
            self.drain_stream_events(h);
            return;
        }
        let listener = match self.bindings.get(local.id()) {
            Some(Binding::Listener(l)) => Some(*l),
            _ => None,
        };
        let is_syn = seg.flags.contains(Flags::SYN) && !seg.flags.contains(Flags::ACK);
        match listener {
            Some(l) if is_syn && remote.principal() == Principal::Sid => {
                // Half-open connections count against the backlog too, so SYNs alone cannot
                // pile up connections.
                let waiting = self.listeners.get(&l).map_or(0, |li| li.backlog.len());
                let half_open = self.streams.values().filter(|s| s.accepted_by == Some(l)).count();
                if waiting + half_open >= self.cfg.backlog {
                    self.stats.drop_queue_full += 1;
                    return;
                }
                let mut remote_dag = x.src.clone();
                remote_dag.clear_visited();
                let local_dag = self.service_dag(local);
                let cfg = self.stream_config(&local_dag, &remote_dag);
                let iss = self.rng.next_u64() as u32;
                let conn = Stream::accept(cfg, now, iss, &seg);
                let h = self.handle();
                self.streams.insert(
                    h,
                    StreamSock {
                        conn,
                        local_sid: local,
                        remote: remote_dag,
                        header: None,
                        accepted_by: Some(l),
                    },
                );
                self.stream_index.insert((*local.id(), *remote.id()), h);
                self.stream_order.push_back(h);
            }
            _ => {
                if !seg.flags.contains(Flags::RST) {
                    self.send_reset(now, x, &seg);
                }
                self.stats.drop_no_socket += 1;
            }
        }
    }

    /// RST for a segment that belongs to no connection (RFC 793's rules for its numbers).
    pub(super) fn send_reset(&mut self, now: Instant, x: &XipRepr, seg: &StreamRepr<'_>) {
        let (seq, ack, flags) = if seg.flags.contains(Flags::ACK) {
            (seg.ack, 0, Flags::RST)
        } else {
            let len = seg.payload.len() as u32
                + u32::from(seg.flags.contains(Flags::SYN))
                + u32::from(seg.flags.contains(Flags::FIN));
            (0, seg.seq.wrapping_add(len), Flags::RST | Flags::ACK)
        };
        let r = StreamRepr { flags, seq, ack, ..StreamRepr::default() };
        let mut buf = vec![0u8; r.buffer_len()];
        if r.emit(&mut buf).is_ok() {
            let mut src = x.dst.clone();
            src.clear_visited();
            if self.send_packet(now, NextHeader::Stream, &x.src, &src, &buf) {
                self.stats.resets_sent += 1;
            }
        }
    }

    pub(super) fn drain_stream_events(&mut self, h: Handle) {
        let Some(s) = self.streams.get_mut(&h) else { return };
        while let Some(e) = s.conn.poll_event() {
            let ev = match e {
                StreamEvent::Connected => {
                    if let Some(l) = s.accepted_by {
                        // Handed to the application only once established.
                        if let Some(li) = self.listeners.get_mut(&l) {
                            li.backlog.push_back(h);
                            if li.backlog.len() == 1 {
                                self.events.push_back(HostEvent::StreamIncoming(l));
                            }
                        }
                        continue;
                    }
                    HostEvent::StreamConnected(h)
                }
                StreamEvent::Readable => HostEvent::StreamReadable(h),
                StreamEvent::Writable => HostEvent::StreamWritable(h),
                StreamEvent::PeerClosed => HostEvent::StreamPeerClosed(h),
                StreamEvent::Closed(e) => HostEvent::StreamClosed(h, e),
            };
            self.events.push_back(ev);
        }
    }

    pub(super) fn stream_config(&self, local: &Dag, remote: &Dag) -> StreamConfig {
        let xip = xip::FIXED_HEADER_LEN + xip::NODE_LEN * (local.len() + remote.len());
        // Room for the STREAM header with its check, timestamps and three SACK blocks.
        let mss = self
            .cfg
            .mtu
            .saturating_sub(xip + stream_wire::HEADER_LEN + stream_wire::CHECK_OPTION_LEN + 12 + 28)
            .clamp(64, u16::MAX as usize);
        StreamConfig { mss: mss as u16, ..self.cfg.stream.clone() }
    }

    /// Makes sure stream `h` has an up-to-date Ethernet + XIP header for its segments; false
    /// when there is none yet (the next hop is being resolved, or there is no route).
    pub(super) fn ensure_stream_header(&mut self, now: Instant, h: Handle) -> bool {
        let Some(s) = self.streams.get(&h) else { return false };
        if s.header.as_ref().is_some_and(|(_, g, _)| *g == self.route_gen) {
            return true;
        }
        let local = self.service_dag(s.local_sid);
        let remote = s.remote.clone();
        match self.frame_for(NextHeader::Stream, &remote, &local, &[]) {
            Some((hdr, hop @ (Some(Hop::Mac(_)) | None))) => {
                let gen = self.route_gen;
                if let Some(s) = self.streams.get_mut(&h) {
                    s.header = Some((hdr, gen, hop.is_none()));
                }
                true
            }
            Some((_, Some(Hop::Resolve(hid)))) => {
                if !self.pending.contains_key(hid.id()) {
                    self.send_xarp_request(now, hid);
                }
                false
            }
            None => false,
        }
    }

    pub(super) fn transmit_stream(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..self.stream_order.len() {
            let h = self.stream_order.pop_front()?;
            if !self.streams.contains_key(&h) {
                continue;
            }
            self.stream_order.push_back(h);
            if !self.ensure_stream_header(now, h) {
                continue;
            }
            let max = (ethernet::HEADER_LEN + self.cfg.mtu).min(buf.len());
            let s = self.streams.get_mut(&h).expect("checked above");
            let (header, _, local) = s.header.as_ref().expect("ensured above");
            let (hlen, local) = (header.len(), *local);
            if max <= hlen {
                continue;
            }
            let Some(n) = s.conn.poll_transmit(now, &mut buf[hlen..max]) else { continue };
            let (header, _, _) = s.header.as_ref().expect("ensured above");
            buf[..hlen].copy_from_slice(header);
            // Patch the XIP payload length.
            buf[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
                .copy_from_slice(&(n as u16).to_be_bytes());
            // The header template came without the segment: the check goes in now.
            integrity::seal_frame(&mut buf[..hlen + n]);
            self.stats.segments_out += 1;
            self.drain_stream_events(h);
            if local {
                // A segment to ourselves goes round the loopback.
                self.loopback.push_back(buf[..hlen + n].to_vec());
                continue;
            }
            return Some(hlen + n);
        }
        None
    }

    pub(super) fn bind(
        &mut self,
        sid: Option<Xid>,
        b: impl FnOnce(Handle) -> Binding,
    ) -> Result<(Handle, Xid), HostError> {
        let sid = match sid {
            Some(s) if s.principal() != Principal::Sid => return Err(HostError::NotAService),
            Some(s) => s,
            None => self.ephemeral_sid(),
        };
        if self.bindings.contains_key(sid.id()) || sid == SID_XHCP {
            return Err(HostError::AddrInUse);
        }
        let h = self.handle();
        self.bindings.insert(*sid.id(), b(h));
        Ok((h, sid))
    }

    pub(super) fn ephemeral_sid(&mut self) -> Xid {
        let mut id = [0u8; 20];
        self.rng.fill(&mut id);
        Xid::new(Principal::Sid, id)
    }

    /// Binds a datagram socket to `sid` (`None`: a fresh random SID); returns it and its SID.
    pub fn dgram_bind(&mut self, sid: Option<Xid>) -> Result<(Handle, Xid), HostError> {
        let (h, sid) = self.bind(sid, Binding::Dgram)?;
        self.dgrams.insert(h, DgramSock { sid, queue: VecDeque::new() });
        Ok((h, sid))
    }

    /// Largest datagram from socket `h` to `dst`.
    pub fn dgram_max(&self, h: Handle, dst: &Dag) -> Result<usize, HostError> {
        let sock = self.dgrams.get(&h).ok_or(HostError::BadHandle)?;
        let src = self.service_dag(sock.sid);
        let xip = xip::FIXED_HEADER_LEN + xip::NODE_LEN * (dst.len() + src.len());
        Ok(self.cfg.mtu.saturating_sub(xip + dgram::HEADER_LEN))
    }

    /// Sends a datagram from socket `h` to `dst` (whose intent is a SID).
    pub fn dgram_send(&mut self, now: Instant, h: Handle, dst: &Dag, data: &[u8]) -> Result<(), HostError> {
        let max = self.dgram_max(h, dst)?;
        if data.len() > max {
            return Err(HostError::TooLarge { len: data.len(), max });
        }
        if dst.intent().principal() != Principal::Sid {
            return Err(HostError::NotAService);
        }
        if *dst.intent() == SID_XHCP {
            // Host and router control is the host's own business.
            return Err(HostError::AddrInUse);
        }
        let src = self.service_dag(self.dgrams[&h].sid);
        let d = DgramRepr { payload: data };
        let mut buf = vec![0u8; d.buffer_len()];
        d.emit(&mut buf).map_err(|_| HostError::TooLarge { len: data.len(), max })?;
        if !self.send_packet(now, NextHeader::Dgram, dst, &src, &buf) {
            return Err(HostError::Unreachable);
        }
        self.stats.dgrams_out += 1;
        Ok(())
    }

    /// The next datagram queued on socket `h`, with the sender's DAG.
    pub fn dgram_recv(&mut self, h: Handle) -> Option<(Dag, Vec<u8>)> {
        self.dgrams.get_mut(&h)?.queue.pop_front()
    }

    /// Listens for STREAM connections to `sid`.
    pub fn listen(&mut self, sid: Xid) -> Result<Handle, HostError> {
        let (h, sid) = self.bind(Some(sid), Binding::Listener)?;
        self.listeners.insert(h, Listener { sid, backlog: VecDeque::new() });
        Ok(h)
    }

    /// An established connection from listener `l`'s backlog, with the peer's DAG.
    pub fn accept(&mut self, l: Handle) -> Option<(Handle, Dag)> {
        let h = self.listeners.get_mut(&l)?.backlog.pop_front()?;
        let s = self.streams.get_mut(&h)?;
        s.accepted_by = None;
        Some((h, s.remote.clone()))
    }

    /// Opens a STREAM connection to `dst` (whose intent is a SID) from a fresh SID.
    pub fn connect(&mut self, now: Instant, dst: Dag) -> Result<Handle, HostError> {
        if dst.intent().principal() != Principal::Sid {
            return Err(HostError::NotAService);
        }
        if matches!(self.route(&dst), Route::Unreachable) {
            return Err(HostError::Unreachable);
        }
        let (h, sid) = self.bind(None, Binding::Stream)?;
        let local_dag = self.service_dag(sid);
        let cfg = self.stream_config(&local_dag, &dst);
        let iss = self.rng.next_u64() as u32;
        let conn = Stream::connect(cfg, now, iss);
        self.stream_index.insert((*sid.id(), *dst.intent().id()), h);
        self.streams
            .insert(h, StreamSock { conn, local_sid: sid, remote: dst, header: None, accepted_by: None });
        self.stream_order.push_back(h);
        Ok(h)
    }

    /// The connection behind stream handle `h` (read, write, close it directly).
    pub fn stream(&mut self, h: Handle) -> Option<&mut Stream> {
        self.streams.get_mut(&h).map(|s| &mut s.conn)
    }

    /// Collects the events a direct use of [`Host::stream`] produced.
    pub fn stream_touched(&mut self, h: Handle) {
        self.drain_stream_events(h);
    }

    /// This host's DAG for stream `h` (its service and SID).
    pub fn stream_local(&self, h: Handle) -> Option<Dag> {
        self.streams.get(&h).map(|s| self.service_dag(s.local_sid))
    }

    /// The peer's DAG of stream `h`.
    pub fn stream_peer(&self, h: Handle) -> Option<&Dag> {
        self.streams.get(&h).map(|s| &s.remote)
    }
}
