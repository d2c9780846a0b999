//! A small blocking client of QMP, QEMU's JSON control protocol, over its Unix socket.
//!
//! Why not the `qapi` crate: its `qapi-qmp` types are generated at build time (by
//! `qapi-codegen`) from the QMP schema of QEMU 9.1, not 7.2, the version these machines run (the
//! block migration 7.2 still has is gone from that schema); its blocking client is a thin layer
//! and its async one brings tokio-util and futures; and the migration tests need only a dozen
//! commands, plus event timestamps kept precisely, which are easier to see in a page of code than
//! through generated types. serde_json, already in the workspace, is all this needs.
//!
//! The protocol: QEMU greets with `{"QMP": {...}}`, the client enters command mode with
//! `qmp_capabilities`, then sends `{"execute": ..., "arguments": ..., "id": ...}` and gets
//! `{"return": ...}` or `{"error": {"class": ..., "desc": ...}}`, one JSON object per line.
//! Asynchronous events (`{"event": "STOP", "data": ..., "timestamp": {"seconds": ..,
//! "microseconds": ..}}`) arrive in between whenever they happen; they are kept, with their
//! timestamps as wall-clock times ([`QmpEvent::timestamp`]), for [`Qmp::wait_event`] and
//! [`Qmp::take_events`]. QEMU stamps an event when it emits it, so two QEMUs on one host give
//! comparable times: a migration's true downtime is the destination's `RESUME` minus the source's
//! `STOP` ([`true_downtime`]).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How long a command may take unless [`Qmp::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached before the deadline (QEMU not started, or gone).
    #[error("QMP socket {path}: {source}")]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP: {0}")]
    Io(#[from] io::Error),
    /// No answer (or no awaited event) in time.
    #[error("QMP: timed out waiting for {0}")]
    Timeout(String),
    /// QEMU closed the connection (it exited).
    #[error("QMP: connection closed by QEMU")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("QMP: protocol error: {0}")]
    Protocol(String),
    /// QEMU refused a command: its error class (`GenericError`, `CommandNotFound`, ...) and
    /// description.
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's description.
        desc: String,
    },
    /// A migration ended otherwise than `completed`.
    #[error("migration {status:?}: {desc}")]
    MigrationFailed {
        /// How it ended.
        status: MigrationStatus,
        /// QEMU's `error-desc`, if any.
        desc: String,
    },
}

/// An asynchronous event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Its name (`STOP`, `RESUME`, `MIGRATION`, `SHUTDOWN`, ...).
    pub name: String,
    /// Its `data` member (`Null` when absent).
    pub data: Value,
    /// When QEMU emitted it (host wall clock, microsecond precision).
    pub timestamp: SystemTime,
}

/// A connection to one QEMU's QMP socket, in command mode.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
    events: Vec<QmpEvent>,
    next_id: u64,
    timeout: Duration,
    /// The greeting's `QMP.version.qemu` (`{"major":7,"minor":2,"micro":..}`).
    version: Value,
}

impl Qmp {
    /// Connects to the socket at `path`, retrying until `timeout` while it does not exist or
    /// refuses (QEMU still starting), reads the greeting and negotiates capabilities.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Qmp, QmpError> {
        let path = path.as_ref().to_path_buf();
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                        && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(source) => return Err(QmpError::Connect { path, source }),
            }
        };
        let mut qmp = Qmp {
            stream,
            path,
            buf: Vec::new(),
            events: Vec::new(),
            next_id: 1,
            timeout: DEFAULT_TIMEOUT,
            version: Value::Null,
        };
        let greeting = qmp.read_message(deadline.max(Instant::now() + Duration::from_secs(1)), "greeting")?;
        let Some(info) = greeting.get("QMP") else {
            return Err(QmpError::Protocol(format!("expected the greeting, got {greeting}")));
        };
        qmp.version = info.pointer("/version/qemu").cloned().unwrap_or(Value::Null);
        qmp.execute("qmp_capabilities", Value::Null)?;
        Ok(qmp)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// QEMU's version from the greeting (`{"major":7,"minor":2,"micro":..}`).
    pub fn version(&self) -> &Value {
        &self.version
    }

    /// How long each command may take from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `command` with `arguments` (`Value::Null` for none) and returns its `return` value.
    /// Events that arrive meanwhile are kept.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if !arguments.is_null() {
            msg["arguments"] = arguments;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => QmpError::Closed,
            _ => QmpError::Io(e),
        })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let reply = self.read_message(deadline, command)?;
            if reply.get("event").is_some() {
                continue; // kept by read_message
            }
            // An answer to an earlier command that timed out is not ours.
            if reply.get("id").is_some_and(|v| v.as_u64() != Some(id)) {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected reply to {command}: {reply}")));
        }
    }

    /// Returns the first event named `name`, received already or within `timeout`, and removes
    /// it from those kept (later events stay).
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<QmpEvent, QmpError> {
        self.wait_event_where(|e| e.name == name, name, timeout)
    }

    /// Returns the first event satisfying `pred`, received already or within `timeout`, and
    /// removes it from those kept; `what` names it in the timeout error.
    pub fn wait_event_where(
        &mut self,
        mut pred: impl FnMut(&QmpEvent) -> bool,
        what: &str,
        timeout: Duration,
    ) -> Result<QmpEvent, QmpError> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if let Some(i) = self.events[seen..].iter().position(&mut pred) {
                return Ok(self.events.remove(seen + i));
            }
            seen = self.events.len();
            let msg = self.read_message(deadline, &format!("event {what}"))?;
            if msg.get("event").is_none() {
                return Err(QmpError::Protocol(format!("unexpected message between commands: {msg}")));
            }
        }
    }

    /// The events received so far (and not taken by [`Qmp::wait_event`]), oldest first; also
    /// reads whatever QEMU has already sent without waiting. A connection QEMU has closed
    /// still gives the events received before.
    pub fn take_events(&mut self) -> Result<Vec<QmpEvent>, QmpError> {
        loop {
            match self.read_message(Instant::now(), "events") {
                Ok(_) => {}
                Err(QmpError::Timeout(_) | QmpError::Closed) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(std::mem::take(&mut self.events))
    }

    /// `query-status`: the VM's run state.
    pub fn query_status(&mut self) -> Result<VmStatus, QmpError> {
        let v = self.execute("query-status", Value::Null)?;
        parse("query-status", v)
    }

    /// `query-migrate`: the state and statistics of the current (or last) migration.
    pub fn query_migrate(&mut self) -> Result<MigrationInfo, QmpError> {
        let v = self.execute("query-migrate", Value::Null)?;
        parse("query-migrate", v)
    }

    /// `migrate-set-capabilities` with each `(capability, state)`, e.g. `("events", true)`.
    pub fn set_capabilities(&mut self, caps: &[(&str, bool)]) -> Result<(), QmpError> {
        let list: Vec<Value> = caps.iter().map(|(c, s)| json!({ "capability": c, "state": s })).collect();
        self.execute("migrate-set-capabilities", json!({ "capabilities": list })).map(drop)
    }

    /// `migrate-set-parameters` with the parameters that are set.
    pub fn set_parameters(&mut self, params: &MigrationParameters) -> Result<(), QmpError> {
        let v = serde_json::to_value(params).map_err(|e| QmpError::Protocol(e.to_string()))?;
        self.execute("migrate-set-parameters", v).map(drop)
    }

    /// `migrate` to `uri` (`tcp:HOST:PORT`, `exec:CMD`, ...): starts the migration and returns.
    pub fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", json!({ "uri": uri })).map(drop)
    }

    /// `migrate-incoming` from `uri`, on a QEMU started with `-incoming defer`.
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", json!({ "uri": uri })).map(drop)
    }

    /// `migrate_cancel`: ends the outgoing migration; the source VM runs on (QEMU kills an exec
    /// transport's child).
    pub fn migrate_cancel(&mut self) -> Result<(), QmpError> {
        self.execute("migrate_cancel", json!({})).map(drop)
    }

    /// Polls `query-migrate` every `poll` until the migration has ended: its final statistics
    /// when `completed`, [`QmpError::MigrationFailed`] otherwise. `each` sees every report
    /// before the end (progress, events) and may end the wait with its error (a deadline, a
    /// cancellation).
    ///
    /// On the source, QEMU 7.2 reports `completed` a moment before it computes the final
    /// `total-time`, `downtime` and `mbps` (they read 0 meanwhile); it moves the VM out of
    /// `finish-migrate` (to `postmigrate`) right after, under the same lock. So once `completed`,
    /// this waits for that (5 s at most) before the last `query-migrate` (the destination, which
    /// has no such statistics and runs on, is asked only once).
    pub fn watch_migration(
        &mut self,
        poll: Duration,
        mut each: impl FnMut(&mut Qmp, &MigrationInfo) -> Result<(), QmpError>,
    ) -> Result<MigrationInfo, QmpError> {
        loop {
            let info = self.query_migrate()?;
            match info.status {
                MigrationStatus::Completed => {
                    let until = Instant::now() + Duration::from_secs(5);
                    while self.query_status()?.status == RunState::FinishMigrate && Instant::now() < until {
                        thread::sleep(Duration::from_millis(1));
                    }
                    return self.query_migrate();
                }
                MigrationStatus::Failed | MigrationStatus::Cancelled => {
                    return Err(QmpError::MigrationFailed {
                        status: info.status,
                        desc: info.error_desc.unwrap_or_default(),
                    })
                }
                _ => each(self, &info)?,
            }
            thread::sleep(poll);
        }
    }

    /// [`Qmp::watch_migration`] every 10 ms, within `timeout`.
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<MigrationInfo, QmpError> {
        let deadline = Instant::now() + timeout;
        self.watch_migration(Duration::from_millis(10), |_, info| {
            if Instant::now() >= deadline {
                return Err(QmpError::Timeout(format!("the migration to end (still {:?})", info.status)));
            }
            Ok(())
        })
    }

    /// `cont`: resumes a paused VM.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", Value::Null).map(drop)
    }

    /// `stop`: pauses the VM.
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", Value::Null).map(drop)
    }

    /// `quit`: QEMU exits. A connection closed before the answer counts as done.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", Value::Null) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads one message (waiting until `deadline`); events are kept and also returned.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Value, QmpError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let msg: Value =
                    serde_json::from_str(text).map_err(|e| QmpError::Protocol(format!("{e} in {text:?}")))?;
                if let Some(event) = event_of(&msg) {
                    self.events.push(event);
                }
                return Ok(msg);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout means "block forever" to the socket: use the smallest instead, so
            // that a deadline already past still reads what is there without waiting.
            self.stream.set_read_timeout(Some(left.max(Duration::from_micros(1))))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(QmpError::Timeout(what.to_string()))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(QmpError::Closed),
                Err(e) => return Err(QmpError::Io(e)),
            }
        }
    }
}

/// The event in a message, if it is one.
fn event_of(msg: &Value) -> Option<QmpEvent> {
    let name = msg.get("event")?.as_str()?.to_string();
    let ts = msg.get("timestamp");
    let secs = ts.and_then(|t| t.get("seconds")).and_then(Value::as_u64).unwrap_or(0);
    let micros = ts.and_then(|t| t.get("microseconds")).and_then(Value::as_u64).unwrap_or(0);
    let timestamp = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
    Some(QmpEvent { name, data: msg.get("data").cloned().unwrap_or(Value::Null), timestamp })
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, QmpError> {
    serde_json::from_value(v.clone()).map_err(|e| QmpError::Protocol(format!("{what}: {e} in {v}")))
}

/// The time from `stop` (the source's `STOP` event) to `resume` (the destination's `RESUME`):
/// how long the guest did not run. `None` if `resume` is not later.
pub fn true_downtime(stop: &QmpEvent, resume: &QmpEvent) -> Option<Duration> {
    resume.timestamp.duration_since(stop.timestamp).ok()
}

/// The VM's run state (`query-status`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VmStatus {
    /// The state.
    pub status: RunState,
    /// Whether the guest's CPUs run.
    pub running: bool,
}

/// QEMU's `RunState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// QEMU's `MigrationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum MigrationStatus {
    /// No migration yet (`query-migrate` answers `{}`).
    #[default]
    None,
    Setup,
    Cancelling,
    Cancelled,
    Active,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecover,
    Completed,
    Failed,
    Colo,
    PreSwitchover,
    Device,
    WaitUnplug,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// `query-migrate`'s answer, the fields migrations are judged by. Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// Where the migration stands.
    #[serde(default)]
    pub status: MigrationStatus,
    /// From `migrate` to completion (ms).
    #[serde(rename = "total-time")]
    pub total_time_ms: Option<u64>,
    /// QEMU's own figure for the time the VM was stopped (ms); see [`true_downtime`].
    #[serde(rename = "downtime")]
    pub downtime_ms: Option<u64>,
    /// While active: the downtime QEMU expects (ms).
    #[serde(rename = "expected-downtime")]
    pub expected_downtime_ms: Option<u64>,
    /// The time to set the migration up (ms).
    #[serde(rename = "setup-time")]
    pub setup_time_ms: Option<u64>,
    /// RAM statistics.
    pub ram: Option<RamStats>,
    /// Why it failed.
    pub error_desc: Option<String>,
}

/// The `ram` member of [`MigrationInfo`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    /// Bytes sent so far.
    pub transferred: u64,
    /// Bytes still to send.
    pub remaining: u64,
    /// The guest's RAM size in bytes.
    pub total: u64,
    /// Throughput in megabits per second.
    #[serde(default)]
    pub mbps: f64,
    /// Pages dirtied per second.
    #[serde(default)]
    pub dirty_pages_rate: u64,
    /// Dirty bitmap synchronisations (rounds).
    #[serde(default)]
    pub dirty_sync_count: u64,
    /// Pages sent whole.
    #[serde(default)]
    pub normal: u64,
    /// Pages sent as one repeated byte (zero pages).
    #[serde(default)]
    pub duplicate: u64,
}

/// `migrate-set-parameters` arguments; fields left `None` are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationParameters {
    /// Bandwidth cap in bytes per second (QEMU 7.2's default: 128 MiB/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// The pause QEMU aims for when it stops the VM, in ms (default 300).
    #[serde(rename = "downtime-limit", skip_serializing_if = "Option::is_none")]
    pub downtime_limit_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn migration_info_parses() {
        let v = json!({"status":"completed","total-time":123,"downtime":4,"setup-time":1,
            "ram":{"transferred":10,"remaining":0,"total":134217728,"mbps":6000.5,
            "dirty-pages-rate":0,"dirty-sync-count":3,"normal":5,"duplicate":7,"skipped":0}});
        let info: MigrationInfo = serde_json::from_value(v).unwrap();
        assert_eq!(info.status, MigrationStatus::Completed);
        assert_eq!(info.total_time_ms, Some(123));
        assert_eq!(info.downtime_ms, Some(4));
        assert_eq!(info.ram.as_ref().unwrap().total, 134217728);
        let none: MigrationInfo = serde_json::from_value(json!({})).unwrap();
        assert_eq!(none.status, MigrationStatus::None);
        let odd: MigrationInfo = serde_json::from_value(json!({"status":"brand-new"})).unwrap();
        assert_eq!(odd.status, MigrationStatus::Unknown);
        let st: VmStatus =
            serde_json::from_value(json!({"status":"inmigrate","running":false,"singlestep":false})).unwrap();
        assert_eq!(st.status, RunState::Inmigrate);
        let p = serde_json::to_value(MigrationParameters { max_bandwidth: Some(5), downtime_limit_ms: None })
            .unwrap();
        assert_eq!(p, json!({"max-bandwidth": 5}));
    }

    /// A fake QEMU on a socket: greeting, capabilities, an event between two commands, an error.
    #[test]
    fn client_against_a_scripted_server() {
        let dir = std::env::temp_dir().join(format!("qh-qmp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut lines = io::BufReader::new(s.try_clone().unwrap());
            let mut next = || {
                let mut l = String::new();
                io::BufRead::read_line(&mut lines, &mut l).unwrap();
                serde_json::from_str::<Value>(&l).unwrap()
            };
            s.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n").unwrap();
            let m = next();
            assert_eq!(m["execute"], "qmp_capabilities");
            s.write_all(format!("{{\"return\": {{}}, \"id\": {}}}\r\n", m["id"]).as_bytes()).unwrap();
            let m = next();
            assert_eq!(m["execute"], "query-status");
            s.write_all(
                b"{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250}, \"event\": \"STOP\"}\r\n",
            )
            .unwrap();
            s.write_all(format!("{{\"return\": {{\"status\": \"paused\", \"singlestep\": false, \"running\": false}}, \"id\": {}}}\r\n", m["id"]).as_bytes()).unwrap();
            let m = next();
            assert_eq!(m["arguments"]["uri"], "tcp:x");
            s.write_all(
                format!(
                    "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"nope\"}}, \"id\": {}}}\r\n",
                    m["id"]
                )
                .as_bytes(),
            )
            .unwrap();
            s.write_all(
                b"{\"timestamp\": {\"seconds\": 1700000001, \"microseconds\": 5}, \"event\": \"RESUME\"}\r\n",
            )
            .unwrap();
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(q.version()["minor"], 2);
        let st = q.query_status().unwrap();
        assert_eq!(st.status, RunState::Paused);
        match q.migrate("tcp:x") {
            Err(QmpError::Command { class, desc, .. }) => {
                assert_eq!((class.as_str(), desc.as_str()), ("GenericError", "nope"))
            }
            other => panic!("{other:?}"),
        }
        let resume = q.wait_event("RESUME", Duration::from_secs(5)).unwrap();
        let events = q.take_events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "STOP");
        assert_eq!(events[0].timestamp, UNIX_EPOCH + Duration::new(1_700_000_000, 250_000));
        assert_eq!(true_downtime(&events[0], &resume), Some(Duration::new(0, 999_755_000)));
        server.join().unwrap();
        assert!(matches!(q.wait_event("X", Duration::from_millis(50)), Err(QmpError::Closed)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
