//! A child process as a guard object: stopped when dropped, stdout read line by line so tests
//! wait for events, stderr kept so a failing test can show it.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How much of the child's stderr is kept (the end of it).
const STDERR_KEEP: usize = 64 << 10;
/// How long a stopped child gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait, once the child has exited, for the rest of its stderr to be read.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// A spawned process, stopped when dropped: SIGTERM to its pid, up to 2 s to exit, then SIGKILL.
/// Nothing but that one pid is ever signalled.
///
/// Its stdout is read line by line by a thread, for [`Child::wait_for_line`]; its stderr is
/// drained by another thread and the last 64 KiB kept for [`Child::stderr_tail`].
///
/// The child also gets SIGTERM if the thread that spawned it exits (`PR_SET_PDEATHSIG`), so a
/// test binary that is killed (timeout, Ctrl-C) leaves no relay or daemon behind. Keep a
/// `Child` on the thread that spawned it; a test's own thread is the natural place.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    what: String,
    lines: Receiver<String>,
    stderr: Arc<StderrBuf>,
    status: Option<ExitStatus>,
}

#[derive(Debug, Default)]
struct StderrBuf {
    state: Mutex<(VecDeque<u8>, bool)>,
    eof: Condvar,
}

impl Child {
    /// Spawns `cmd` (typically from [`crate::Netns::cmd`]) with stdout and stderr piped; stdin
    /// is left as `cmd` says (inherited unless set, see [`Child::stdin`]).
    ///
    /// Stdout is queued line by line until read: not for programs that write a byte stream.
    pub fn spawn(mut cmd: Command) -> io::Result<Child> {
        cmd.stdout(Stdio::piped());
        Child::spawn_with_stdout(cmd)
    }

    /// [`Child::spawn`] for a program whose stdout is a byte stream: stdout stays where `cmd`
    /// sends it (a file, a pipe of the caller's); only stderr is read.
    pub fn spawn_with_stdout(mut cmd: Command) -> io::Result<Child> {
        let what = format!("{cmd:?}");
        cmd.stderr(Stdio::piped());
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only makes async-signal-safe system calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then no signal would ever come.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let mut inner =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot spawn: {e}")))?;

        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = inner.stdout.take() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text =
                                String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string();
                            if tx.send(text).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }

        let stderr = Arc::new(StderrBuf::default());
        if let Some(mut pipe) = inner.stderr.take() {
            let buf = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut state = buf.state.lock().unwrap_or_else(|p| p.into_inner());
                            state.0.extend(&chunk[..n]);
                            let excess = state.0.len().saturating_sub(STDERR_KEEP);
                            state.0.drain(..excess);
                            drop(state);
                            buf.eof.notify_all();
                        }
                    }
                }
                buf.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
                buf.eof.notify_all();
            });
        } else {
            stderr.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        }

        Ok(Child { inner, what, lines, stderr, status: None })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// The child's stdin, when the command was given `Stdio::piped()` for it.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.inner.stdin.as_mut()
    }

    /// Takes the child's stdin (to write it from another thread, or to close it by dropping).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.inner.stdin.take()
    }

    /// Waits until a line of what the child wrote to stderr (of its last 64 KiB) satisfies
    /// `predicate`, and returns it. An error when `timeout` passes first or stderr closes.
    pub fn wait_for_stderr(
        &mut self,
        mut predicate: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.stderr.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let (a, b) = state.0.as_slices();
            let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
            if let Some(l) = text.lines().find(|l| predicate(l)) {
                return Ok(l.to_string());
            }
            if state.1 {
                return Err(io::Error::other(format!("{}: stderr closed: {text}", self.what)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{}: {text}", self.what)));
            }
            state = match self.stderr.eof.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Reads stdout lines until one satisfies `predicate` and returns it; lines before it are
    /// consumed. An error when `timeout` passes first or stdout closes (the child exited);
    /// the error carries the end of the child's stderr.
    pub fn wait_for_line(
        &mut self,
        mut predicate: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if predicate(&line) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: no awaited line on stdout within {timeout:?}; stderr:\n{}",
                            self.what,
                            self.stderr_tail()
                        ),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_timeout(TERM_GRACE)?;
                    let status = status.map_or("still running".to_string(), |s| s.to_string());
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: stdout closed before the awaited line ({status}); stderr:\n{}",
                            self.what,
                            self.stderr_tail()
                        ),
                    ));
                }
            }
        }
    }

    /// Waits up to `timeout` for the child to exit: `Some(status)` when it has (its stderr then
    /// read to the end, as far as the child wrote it), `None` when it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Bounded polling: std offers no waitpid with a timeout.
            thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// Sends `signal` to the child, unless it has already been reaped (its pid could then
    /// belong to another process).
    pub fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own unreaped child: it is still that child (a zombie
        // keeps its pid).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops the child as `Drop` does (SIGTERM, up to 2 s, SIGKILL) and returns its exit status.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        // Should SIGTERM fail, SIGKILL below still applies.
        let _ = self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(TERM_GRACE)? {
            return Ok(status);
        }
        self.inner.kill()?;
        let status = self.inner.wait()?;
        self.exited(status);
        Ok(status)
    }

    /// The end of what the child wrote to stderr so far (the last 64 KiB).
    pub fn stderr_tail(&self) -> String {
        let state = self.stderr.state.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = state.0.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            if let Some(status) = self.inner.try_wait()? {
                self.exited(status);
            }
        }
        Ok(self.status)
    }

    /// Records the exit and gives the stderr thread a moment to read what is left in the pipe,
    /// so a caller that saw the exit also sees the last words (e.g. final counters).
    fn exited(&mut self, status: ExitStatus) {
        self.status = Some(status);
        let deadline = Instant::now() + STDERR_DRAIN;
        let mut state = self.stderr.state.lock().unwrap_or_else(|p| p.into_inner());
        while !state.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // A grandchild may still hold the pipe open; do not wait for it.
                break;
            }
            state = match self.stderr.eof.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Best effort and never a panic: this also runs while a failed test unwinds.
        let _ = self.terminate();
    }
}
