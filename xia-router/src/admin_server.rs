//! The admin socket, served off the forwarding path.
//!
//! A thread of its own accepts the admin connections and reads their command lines, all of them
//! non-blocking on one epoll: at most [`MAX_CONNS`] connections at once, a line of at most
//! [`MAX_LINE`] bytes each, read within [`READ_TIMEOUT`] of connecting. A complete command is
//! parsed there and handed to the forwarding loop through a channel, with an eventfd the loop
//! polls beside its ports ([`AdminServer::fd`]); the loop runs it between frames
//! ([`AdminServer::serve`]: `admin::execute` is quick) and hands the reply back, and this thread
//! writes it out within [`WRITE_TIMEOUT`]. The forwarding loop never waits for an admin client.
//!
//! The protocol is unchanged: one command per connection, a line in, the reply out, then the
//! connection is closed.
//!
//! When all [`MAX_CONNS`] are taken, a new connection takes the place of the oldest one still
//! reading its line if that one has had [`EVICT_AFTER`] to send it (a client with a command
//! sends it at once: that one is idle); otherwise the new connection is closed at once. Both
//! are counted (`admin_conns_evicted`, `admin_conns_refused`), as are deadlines passed
//! (`admin_timeouts`) and lines too long (`admin_lines_too_long`): idle connections neither hold
//! up forwarding nor lock the operator out for long.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xia_core::sys::{Epoll, EventFd};

use crate::admin::{self, Command};

/// Admin connections open at once, at most.
pub const MAX_CONNS: usize = 64;
/// Longest command line, newline excluded.
pub const MAX_LINE: usize = 4096;
/// Time a connection has to send its line, from when it was accepted.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Time a reply has to be taken by the client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time the forwarding loop has to answer a command (it answers in microseconds when it runs).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that has not sent its line this long after it was accepted may be closed to
/// make room for a new one.
pub const EVICT_AFTER: Duration = Duration::from_millis(250);
/// Connections accepted per turn of the admin thread, at most: the lines of those already
/// accepted are read in between.
const ACCEPTS_PER_TURN: usize = 16;
/// Bytes read and dropped from a connection before closing it (what a client sent beyond its
/// line), so that its reply is not lost to a reset.
const DRAIN: usize = 64 << 10;

const LISTENER: u64 = 0;
const WAKE: u64 = 1;

/// The admin socket's counters.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    timeouts: AtomicU64,
    too_long: AtomicU64,
    commands: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A command for the forwarding loop, from connection `id`.
#[derive(Debug)]
struct Request {
    id: u64,
    command: Command,
}

/// The admin socket's server: its thread, and the forwarding loop's end of it.
#[derive(Debug)]
pub struct AdminServer {
    requests: Receiver<Request>,
    /// Readable when requests wait (the forwarding loop polls it).
    ready: EventFd,
    replies: Sender<(u64, String)>,
    /// Wakes the admin thread (replies, stop).
    wake: EventFd,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `listener` on a thread of its own.
    pub fn start(listener: UnixListener) -> io::Result<AdminServer> {
        listener.set_nonblocking(true)?;
        let (req_tx, requests) = mpsc::sync_channel(MAX_CONNS);
        let (replies, rep_rx) = mpsc::channel();
        let ready = EventFd::new()?;
        let wake = EventFd::new()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let epoll = Epoll::new()?;
        epoll.add_readable(listener.as_raw_fd(), LISTENER)?;
        epoll.add_readable(wake.as_raw_fd(), WAKE)?;
        let mut t = Thread {
            epoll,
            listener,
            wake: wake.try_clone()?,
            ready: ready.try_clone()?,
            requests: req_tx,
            replies: rep_rx,
            counters: counters.clone(),
            conns: HashMap::new(),
            next_id: WAKE + 1,
        };
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("admin".into()).spawn(move || {
            if let Err(e) = t.run(&s) {
                tracing::error!("admin socket: {e}; no more admin commands");
            }
        })?;
        Ok(AdminServer { requests, ready, replies, wake, stop, counters, thread: Some(thread) })
    }

    /// The descriptor to poll for readability: commands are waiting for [`AdminServer::serve`].
    pub fn fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Runs up to `max` of the commands waiting with `execute` and hands their replies back;
    /// how many ran. Those left make the descriptor readable again.
    pub fn serve(&self, max: usize, mut execute: impl FnMut(&Command) -> String) -> usize {
        self.ready.clear();
        let mut n = 0;
        while n < max {
            let Ok(req) = self.requests.try_recv() else { break };
            let reply = execute(&req.command);
            Counters::bump(&self.counters.commands);
            let _ = self.replies.send((req.id, reply));
            n += 1;
        }
        if n == max {
            // Perhaps more: the next turn of the loop comes back for them.
            self.ready.wake();
        }
        if n > 0 {
            self.wake.wake();
        }
        n
    }

    /// The counters, for `stats`.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        [
            ("admin_conns_accepted", &c.accepted),
            ("admin_conns_refused", &c.refused),
            ("admin_conns_evicted", &c.evicted),
            ("admin_timeouts", &c.timeouts),
            ("admin_lines_too_long", &c.too_long),
            ("admin_commands", &c.commands),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
        .collect()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading the line: what came so far.
    Reading(Vec<u8>),
    /// The command is with the forwarding loop.
    Waiting,
    /// Writing the reply: the bytes and how many went out.
    Writing(Vec<u8>, usize),
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    state: State,
    accepted: Instant,
    deadline: Instant,
}

/// The admin thread.
#[derive(Debug)]
struct Thread {
    epoll: Epoll,
    listener: UnixListener,
    wake: EventFd,
    ready: EventFd,
    requests: SyncSender<Request>,
    replies: Receiver<(u64, String)>,
    counters: Arc<Counters>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
}

impl Thread {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_CONNS + 2];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let timeout =
                self.conns.values().map(|c| c.deadline).min().map(|d| d.saturating_duration_since(now));
            let n = self.epoll.wait_for(&mut events, timeout)?;
            let mut accept = false;
            // The connections first, the new ones after: a client's line is read before more
            // connections can push it out.
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                match token {
                    LISTENER => accept = true,
                    WAKE => {
                        self.wake.clear();
                    }
                    id => self.on_event(id, flags),
                }
            }
            while let Ok((id, reply)) = self.replies.try_recv() {
                if self.conns.get(&id).is_some_and(|c| matches!(c.state, State::Waiting)) {
                    self.reply(id, reply.into_bytes());
                }
            }
            if accept {
                self.accept();
            }
            self.expire(Instant::now());
        }
        Ok(())
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors or memory, or a connection gone before it was taken: try
                // again on the next turn.
                Err(e) => {
                    tracing::debug!("admin accept: {e}");
                    return;
                }
            };
            Counters::bump(&self.counters.accepted);
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let now = Instant::now();
            if self.conns.len() >= MAX_CONNS {
                let idle = self
                    .conns
                    .iter()
                    .filter(|(_, c)| matches!(c.state, State::Reading(_)))
                    .min_by_key(|(_, c)| c.accepted)
                    .filter(|(_, c)| now.duration_since(c.accepted) >= EVICT_AFTER)
                    .map(|(&id, _)| id);
                match idle {
                    Some(id) => {
                        Counters::bump(&self.counters.evicted);
                        if let Some(c) = self.conns.remove(&id) {
                            close(c.stream, b"error: no command in time, closed to make room\n");
                        }
                    }
                    None => {
                        Counters::bump(&self.counters.refused);
                        close(stream, b"error: too many admin connections, try again\n");
                        continue;
                    }
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            if let Err(e) = self.epoll.add_readable(stream.as_raw_fd(), id) {
                tracing::debug!("admin connection: {e}");
                continue;
            }
            let conn = Conn {
                stream,
                state: State::Reading(Vec::new()),
                accepted: now,
                deadline: now + READ_TIMEOUT,
            };
            self.conns.insert(id, conn);
        }
    }

    fn on_event(&mut self, id: u64, flags: u32) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let outcome = match &mut c.state {
            State::Reading(buf) => read_line(&c.stream, buf),
            State::Waiting if flags & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 => {
                // Nothing is asked for while waiting but hang-ups and errors: the client is gone.
                Got::Gone
            }
            State::Waiting => Got::More,
            State::Writing(..) => return self.write(id),
        };
        match outcome {
            Got::More => {}
            Got::Gone => {
                self.conns.remove(&id);
            }
            Got::Line(line) => self.command(id, line),
            Got::TooLong => {
                Counters::bump(&self.counters.too_long);
                self.reply(id, format!("error: command longer than {MAX_LINE} bytes\n").into_bytes());
            }
        }
    }

    /// A complete line from connection `id`.
    fn command(&mut self, id: u64, line: Vec<u8>) {
        let line = match String::from_utf8(line) {
            Ok(l) => l,
            Err(_) => return self.reply(id, b"error: not UTF-8\n".to_vec()),
        };
        let command = match admin::parse(&line) {
            Ok(c) => c,
            Err(e) => return self.reply(id, format!("error: {e}\n").into_bytes()),
        };
        match self.requests.try_send(Request { id, command }) {
            Ok(()) => {
                self.ready.wake();
                let Some(c) = self.conns.get_mut(&id) else { return };
                c.state = State::Waiting;
                c.deadline = Instant::now() + ANSWER_TIMEOUT;
                // Hang-ups and errors only (always reported).
                let _ = self.epoll.ctl(libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), 0, id);
            }
            Err(TrySendError::Full(_)) => self.reply(id, b"error: the router is busy, try again\n".to_vec()),
            Err(TrySendError::Disconnected(_)) => self.reply(id, b"error: the router is stopping\n".to_vec()),
        }
    }

    /// Writes `reply` to connection `id`, then closes it.
    fn reply(&mut self, id: u64, reply: Vec<u8>) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        c.state = State::Writing(reply, 0);
        c.deadline = Instant::now() + WRITE_TIMEOUT;
        let _ = self.epoll.ctl(libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), libc::EPOLLOUT as u32, id);
        self.write(id);
    }

    fn write(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let State::Writing(buf, off) = &mut c.state else { return };
        while *off < buf.len() {
            match (&c.stream).write(&buf[*off..]) {
                Ok(n) => *off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        if let Some(c) = self.conns.remove(&id) {
            close(c.stream, b"");
        }
    }

    /// Closes the connections past their deadline.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> =
            self.conns.iter().filter(|(_, c)| c.deadline <= now).map(|(&id, _)| id).collect();
        for id in late {
            let Some(c) = self.conns.remove(&id) else { continue };
            Counters::bump(&self.counters.timeouts);
            let msg: &[u8] = match c.state {
                State::Reading(_) => b"error: no command in time\n",
                State::Waiting => b"error: the router did not answer in time\n",
                State::Writing(..) => b"",
            };
            close(c.stream, msg);
        }
    }
}

/// What reading a connection's line came to.
#[derive(Debug)]
enum Got {
    /// Not all of it yet.
    More,
    /// The client went away (or failed) before sending any.
    Gone,
    /// The line, without its newline (or ended by the client closing its side).
    Line(Vec<u8>),
    /// Longer than [`MAX_LINE`].
    TooLong,
}

/// Reads what `stream` has of its line into `buf`.
fn read_line(stream: &UnixStream, buf: &mut Vec<u8>) -> Got {
    let mut chunk = [0u8; 1024];
    loop {
        let room = (MAX_LINE + 1 - buf.len()).min(chunk.len());
        match (&*stream).read(&mut chunk[..room]) {
            Ok(0) if buf.is_empty() => return Got::Gone,
            Ok(0) => return Got::Line(std::mem::take(buf)),
            Ok(n) => {
                let old = buf.len();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf[old..].iter().position(|&b| b == b'\n') {
                    let mut line = std::mem::take(buf);
                    line.truncate(old + p);
                    return Got::Line(line);
                }
                if buf.len() > MAX_LINE {
                    return Got::TooLong;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::More,
            Err(_) => return Got::Gone,
        }
    }
}

/// Says `last` if it fits in the socket's buffer, takes what the client sent beyond its line
/// (closing with it unread would reset the connection, and the client lose its reply), closes.
fn close(stream: UnixStream, last: &[u8]) {
    if !last.is_empty() {
        let _ = (&stream).write(last);
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN {
        match (&stream).read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a socket under the temporary directory, served by a thread standing for the
    /// forwarding loop (`stats` answers `ok`, `info` takes 50 ms), until the guard goes.
    struct Fixture {
        path: std::path::PathBuf,
        stop: Arc<AtomicBool>,
        loop_thread: Option<JoinHandle<Vec<(String, u64)>>>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let path = std::env::temp_dir().join(format!("xia-admin-{name}-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let loop_thread = std::thread::spawn(move || {
                let server = AdminServer::start(listener).unwrap();
                while !s.load(Ordering::Relaxed) {
                    let mut p = libc::pollfd { fd: server.fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 10) };
                    if p.revents != 0 {
                        server.serve(8, |c| match c {
                            Command::Info => {
                                std::thread::sleep(Duration::from_millis(50));
                                "ok\ninfo\n".into()
                            }
                            _ => "ok\nstats\n".into(),
                        });
                    }
                }
                server.stats()
            });
            Fixture { path, stop, loop_thread: Some(loop_thread) }
        }

        fn ask(&self, line: &[u8]) -> String {
            let mut c = UnixStream::connect(&self.path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(line).unwrap();
            if !line.ends_with(b"\n") {
                c.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut out = Vec::new();
            // A reset after the reply still leaves the reply.
            let _ = c.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        }

        fn finish(mut self) -> HashMap<String, u64> {
            self.stop.store(true, Ordering::Relaxed);
            self.loop_thread.take().unwrap().join().unwrap().into_iter().collect()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn commands_are_answered_past_idle_connections_and_abuse_is_counted() {
        let f = Fixture::new("flood");
        assert_eq!(f.ask(b"stats\n"), "ok\nstats\n");
        assert_eq!(f.ask(b"info"), "ok\ninfo\n", "a line ended by the client closing its side");
        assert!(f.ask(b"frob\n").starts_with("error: frob: expected"));
        assert!(f.ask(&vec![b'x'; 3 * MAX_LINE]).contains("longer than"));
        // Twice the bound of idle connections at once: the rest are closed at once.
        let idle: Vec<UnixStream> =
            (0..2 * MAX_CONNS).map(|_| UnixStream::connect(&f.path).unwrap()).collect();
        std::thread::sleep(EVICT_AFTER + Duration::from_millis(100));
        // They have had their time: a command takes the place of one of them.
        let t = Instant::now();
        assert_eq!(f.ask(b"stats\n"), "ok\nstats\n");
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        // The read deadline closes the rest.
        std::thread::sleep(READ_TIMEOUT + Duration::from_millis(200));
        let mut gone = 0;
        for mut c in idle {
            let mut b = Vec::new();
            c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            if c.read_to_end(&mut b).is_ok() {
                gone += 1;
            }
        }
        assert_eq!(gone, 2 * MAX_CONNS, "every idle connection was closed");
        let s = f.finish();
        // Those beyond the bound were closed at once, or (on a slow machine, once the first had
        // had their time) took the place of the oldest; the command took one's place.
        assert_eq!(s["admin_conns_refused"] + s["admin_conns_evicted"], MAX_CONNS as u64 + 1, "{s:?}");
        assert!(s["admin_conns_evicted"] >= 1, "{s:?}");
        assert_eq!(s["admin_timeouts"], MAX_CONNS as u64 - 1, "{s:?}");
        assert_eq!(s["admin_lines_too_long"], 1, "{s:?}");
        assert_eq!(s["admin_commands"], 3, "{s:?}");
    }
}
