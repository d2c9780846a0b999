//! Moving bytes to and from applications: a raw stream's bytes between its application's socket
//! and the host's STREAM buffers (one copy each way, no framing), queued datagrams to their
//! socket's application, and every connection's queued messages out.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use super::apps::OUTBUF_SOFT_LIMIT;
use super::conn::{Conn, Role};
use super::Daemon;
use crate::host::Handle;
use crate::ipc::Response;
use crate::link::Link;
use crate::sys::Epoll;

/// Bytes moved per stream per loop turn, so one busy stream does not starve the rest.
const PUMP_BUDGET: usize = 4 << 20;
/// Outgoing bytes beyond which an application that does not read is cut off (fetched chunks
/// are the only messages that can still pile up past the soft limit).
const OUTBUF_HARD_LIMIT: usize = 64 << 20;

impl<L: Link> Daemon<L> {
    /// Moves bytes of raw streams and queued datagrams to their applications.
    pub(super) fn pump_dirty(&mut self) {
        let ids: Vec<u64> = self.dirty.drain().collect();
        for id in ids {
            let Some(role) = self.conns.get(&id).map(|c| c.role) else { continue };
            match role {
                Role::Raw(h) if self.pump_stream(id, h) => {
                    self.dirty.insert(id);
                }
                Role::Dgram(h) => {
                    while self.conns.get(&id).is_some_and(|c| c.pending_out() < OUTBUF_SOFT_LIMIT) {
                        let Some((src, data)) = self.host.dgram_recv(h) else { break };
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.queue_with(&Response::RecvFrom { src }, &data);
                        }
                    }
                    self.read_messages(id);
                }
                // Requests left in its buffer at the end of its last turn.
                _ => self.read_messages(id),
            }
        }
    }

    /// One turn of a raw stream; true if it should get another turn right away.
    fn pump_stream(&mut self, id: u64, h: Handle) -> bool {
        let mut again = false;
        // Earlier message bytes (the Connected answer) go first.
        self.flush_conn(id);
        let Some(c) = self.conns.get_mut(&id) else { return false };
        if c.pending_out() > 0 {
            return false;
        }
        let Some(conn) = self.host.stream(h) else { return false };
        // Network -> application.
        let mut moved = 0;
        while moved < PUMP_BUDGET && !c.write_dead {
            let (a, b) = conn.peek();
            if a.is_empty() {
                break;
            }
            let iov = [io::IoSlice::new(a), io::IoSlice::new(b)];
            match c.sock.write_vectored(&iov) {
                Ok(0) => break,
                Ok(n) => {
                    conn.consume(n);
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => c.write_dead = true,
            }
        }
        if moved >= PUMP_BUDGET {
            again = true;
        }
        if conn.is_read_closed() && !c.write_shut && !c.write_dead {
            // The peer's orderly close, after its data: the application reads end of file.
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            c.write_shut = true;
        }
        // Application -> network: bytes that came with the attach request first.
        if !c.pending_in().is_empty() {
            let w = conn.write(c.pending_in()).unwrap_or(c.pending_in().len());
            c.consume_in(w, &mut self.budget);
        }
        let early = !c.pending_in().is_empty();
        // The application's end of file may have been read with those bytes.
        if c.read_closed && !early {
            conn.close();
        }
        let mut taken = 0;
        while !c.read_closed && !early && taken < PUMP_BUDGET && conn.send_space() > 0 {
            // Straight from the application's socket into the send buffer: no bounce copy.
            let (a, b) = conn.write_slices();
            let mut iov = [io::IoSliceMut::new(a), io::IoSliceMut::new(b)];
            match c.sock.read_vectored(&mut iov) {
                Ok(0) => {
                    c.read_closed = true;
                    conn.close();
                }
                Ok(n) => {
                    conn.commit_write(n);
                    taken += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The application went away: what it wrote is sent, then FIN.
                Err(_) => {
                    c.read_closed = true;
                    conn.close();
                }
            }
        }
        if taken >= PUMP_BUDGET {
            again = true;
        }
        let want_read = !c.read_closed && !early && conn.send_space() > 0;
        let want_write = !c.write_dead && conn.readable() > 0;
        if c.registered {
            set_interest(&self.epoll, c, id, want_read, want_write);
        }
        // Data for an application that can no longer read it: reset, as TCP does when data
        // reaches a closed socket.
        let unwanted = c.write_dead && conn.readable() > 0;
        let finished = c.read_closed && (c.write_shut || c.write_dead);
        self.host.stream_touched(h);
        if unwanted {
            self.owners.remove(&h);
            self.host.abort(h);
            self.host.close(h);
            self.remove_conn(id);
            return false;
        }
        if finished {
            // Both directions done: the stream finishes on its own (FIN after the data) and the
            // host forgets it then.
            self.owners.remove(&h);
            self.host.close(h);
            self.remove_conn(id);
            return false;
        }
        again
    }

    pub(super) fn flush_conns(&mut self) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending_out() > 0 || c.close_after_flush)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.flush_conn(id);
        }
    }

    pub(super) fn flush_conn(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let had = c.pending_out();
        if c.out.write_to(&mut c.sock).is_err() {
            c.out.clear();
            c.close_after_flush = true;
        }
        if c.pending_out() < had {
            c.out_progress_at = std::time::Instant::now();
        }
        if c.pending_out() == 0 {
            if c.close_after_flush {
                self.drop_conn(id, false);
                return;
            }
        } else if c.pending_out() > OUTBUF_HARD_LIMIT {
            tracing::warn!("application connection {id} does not read its messages: dropped");
            self.apps_overflowed += 1;
            self.drop_conn(id, true);
            return;
        }
        // Only a buffer that just drained gives the pump more to do (marking a connection dirty
        // on every flush would keep the loop from ever sleeping).
        let drained = had > 0 && c.pending_out() == 0;
        match c.role {
            Role::Raw(_) => {
                // The pump decides a raw stream's interest.
                if drained {
                    self.dirty.insert(id);
                } else if c.pending_out() > 0 {
                    let want_read = c.interest & libc::EPOLLIN as u32 != 0;
                    set_interest(&self.epoll, c, id, want_read, true);
                }
            }
            Role::Connecting(_) => set_interest(&self.epoll, c, id, false, c.pending_out() > 0),
            _ => {
                // Its requests are read again once its answers drain below the soft limit (and
                // once the budget has room for it, or its chunk is named, if it waits for that).
                let want_read = !c.close_after_flush
                    && !c.starved
                    && !c.awaiting_hash
                    && c.pending_out() < OUTBUF_SOFT_LIMIT;
                set_interest(&self.epoll, c, id, want_read, c.pending_out() > 0);
                if drained {
                    // Datagrams may wait in the host, requests in the connection's buffer.
                    self.dirty.insert(id);
                }
            }
        }
    }
}

/// What to be woken for on an application socket: readability only while there is room to
/// take its bytes (epoll is level-triggered: a socket we cannot drain would wake us in a loop),
/// writability only while something waits to be written.
pub(super) fn set_interest(epoll: &Epoll, c: &mut Conn, id: u64, want_read: bool, want_write: bool) {
    let mut ev = 0;
    if want_read {
        ev |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
    }
    if want_write {
        ev |= libc::EPOLLOUT as u32;
    }
    if ev != c.interest && epoll.ctl(libc::EPOLL_CTL_MOD, c.sock.as_raw_fd(), ev, id).is_ok() {
        c.interest = ev;
    }
}
