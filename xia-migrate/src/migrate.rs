//! `xmigrate migrate`: drives a migration through QEMU's QMP, the way `virsh migrate --live
//! --verbose` does: sets the migration's capabilities and parameters, starts the destination's
//! `xmigrate recv` (when its QMP is given) and the source's `xmigrate send`, shows the progress,
//! and reports QEMU's figures and the true downtime (the destination's `RESUME` event minus the
//! source's `STOP` event; both are stamped with the host's clock).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu_hooks::qmp::{
    true_downtime, MigrationInfo, MigrationParameters, MigrationStatus, Qmp, QmpError, QmpEvent,
};

/// How `xmigrate migrate` runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The source QEMU's QMP socket.
    pub qmp: PathBuf,
    /// The destination QEMU's QMP socket (started with `-incoming defer`); without it, the
    /// destination is expected to run `xmigrate recv` already.
    pub dest_qmp: Option<PathBuf>,
    /// The destination host's DAG, in words (as `xmigrate send` takes it).
    pub to: Vec<String>,
    /// The `xmigrate` program QEMU runs (this one by default).
    pub program: PathBuf,
    /// xiad's socket for the source's `xmigrate send`, if not its environment's.
    pub send_socket: Option<PathBuf>,
    /// xiad's socket for the destination's `xmigrate recv`, if not its environment's.
    pub recv_socket: Option<PathBuf>,
    /// Both sides' timeout (seconds without progress).
    pub timeout: Duration,
    /// QEMU's bandwidth cap in bytes/s (0: none).
    pub max_bandwidth: u64,
    /// QEMU's downtime limit.
    pub downtime_limit: Option<Duration>,
    /// Cancel the migration if it has not completed by then (QEMU's iterations may never
    /// converge when the guest dirties memory faster than it can be sent).
    pub give_up_after: Option<Duration>,
    /// Extra words for `xmigrate send`.
    pub send_args: Vec<String>,
    /// Extra words for `xmigrate recv`.
    pub recv_args: Vec<String>,
    /// No progress on stderr.
    pub quiet: bool,
}

impl MigrateOptions {
    /// A migration of the VM behind `qmp` to the host at `to`, by the `xmigrate` at `program`,
    /// with the command's defaults: both sides' sockets from QEMU's environment, a 10 s timeout,
    /// no bandwidth cap, QEMU's downtime limit, no time limit, progress shown.
    pub fn new(qmp: PathBuf, dest_qmp: Option<PathBuf>, to: Vec<String>, program: PathBuf) -> MigrateOptions {
        MigrateOptions {
            qmp,
            dest_qmp,
            to,
            program,
            send_socket: None,
            recv_socket: None,
            timeout: Duration::from_secs(10),
            max_bandwidth: 0,
            downtime_limit: None,
            give_up_after: None,
            send_args: Vec::new(),
            recv_args: Vec::new(),
            quiet: false,
        }
    }
}

/// What a migration took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// QEMU's total time.
    pub total: Duration,
    /// QEMU's own downtime figure.
    pub qemu_downtime: Duration,
    /// Destination RESUME minus source STOP (with the destination's QMP).
    pub true_downtime: Option<Duration>,
    /// RAM bytes QEMU sent.
    pub ram_transferred: u64,
    /// The guest's RAM.
    pub ram_total: u64,
    /// Rounds of dirty-page synchronisation.
    pub dirty_syncs: u64,
}

impl Report {
    /// As JSON (`--json`), times in milliseconds.
    pub fn to_json(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{{\"total_ms\":{:.3},\"qemu_downtime_ms\":{:.3},\"true_downtime_ms\":{},\"ram_transferred\":{},\"ram_total\":{},\"dirty_syncs\":{}}}",
            ms(self.total),
            ms(self.qemu_downtime),
            self.true_downtime.map_or("null".to_string(), |d| format!("{:.3}", ms(d))),
            self.ram_transferred,
            self.ram_total,
            self.dirty_syncs
        )
    }
}

/// Why `xmigrate migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// QMP failed.
    #[error("{0}")]
    Qmp(#[from] QmpError),
    /// The migration failed; the source VM keeps running.
    #[error("migration {status:?}: {desc}")]
    Failed {
        /// QEMU's status.
        status: MigrationStatus,
        /// QEMU's reason.
        desc: String,
    },
}

/// A shell word, quoted for `/bin/sh -c` (QEMU runs exec URIs through it).
fn quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@".contains(&b)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn exec_uri(program: &Path, socket: &Option<PathBuf>, words: &[String]) -> String {
    let mut cmd = vec!["exec".to_string(), quote(&program.to_string_lossy())];
    if let Some(s) = socket {
        cmd.push("--socket".into());
        cmd.push(quote(&s.to_string_lossy()));
    }
    cmd.extend(words.iter().map(|w| quote(w)));
    format!("exec:{}", cmd.join(" "))
}

/// Progress on stderr: a bar with `\r` on a terminal, a line a second otherwise.
struct Progress {
    tty: bool,
    last_line: Option<Instant>,
    quiet: bool,
}

impl Progress {
    fn show(&mut self, info: &MigrationInfo, elapsed: Duration) {
        if self.quiet {
            return;
        }
        let Some(ram) = &info.ram else { return };
        let done = ram.total.saturating_sub(ram.remaining);
        let pct = if ram.total == 0 { 0.0 } else { 100.0 * done as f64 / ram.total as f64 };
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let text = format!(
            "Migration: [{:>3.0} %] {:.0}/{:.0} MiB sent {:.0} MiB, {:.0} Mbit/s, {:.1} s",
            pct,
            mib(done),
            mib(ram.total),
            mib(ram.transferred),
            ram.mbps,
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr();
        if self.tty {
            let width = 24;
            let filled = ((pct / 100.0) * width as f64).round() as usize;
            let bar: String = (0..width).map(|i| if i < filled { '#' } else { ' ' }).collect();
            let _ = write!(err, "\r[{bar}] {text}\x1b[K");
        } else if self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last_line = Some(Instant::now());
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    fn end(&mut self) {
        if self.tty && !self.quiet {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// The first event called `name` among `events`.
fn event<'a>(events: &'a [QmpEvent], name: &str) -> Option<&'a QmpEvent> {
    events.iter().find(|e| e.name == name)
}

/// Runs the migration over xmigrate to its end.
pub fn drive(opts: &MigrateOptions) -> Result<Report, DriveError> {
    let timeout_words = vec!["--timeout".to_string(), format!("{}", opts.timeout.as_secs_f64())];
    let mut recv = vec!["recv".to_string()];
    recv.extend(timeout_words.iter().cloned());
    recv.extend(opts.recv_args.iter().cloned());
    let mut send = vec!["send".to_string()];
    send.extend(timeout_words);
    send.extend(opts.send_args.iter().cloned());
    send.extend(opts.to.iter().cloned());
    let incoming = opts.dest_qmp.as_ref().map(|_| exec_uri(&opts.program, &opts.recv_socket, &recv));
    drive_uris(opts, incoming.as_deref(), &exec_uri(&opts.program, &opts.send_socket, &send))
}

/// Runs a migration to its end with the given URIs (QEMU's own transports too: the comparisons
/// of `bench/migration.sh` are measured by this same loop). `incoming` goes to the destination
/// (with `opts.dest_qmp`); `opts.to`, `program` and the sockets are not used.
pub fn drive_uris(
    opts: &MigrateOptions,
    incoming: Option<&str>,
    outgoing: &str,
) -> Result<Report, DriveError> {
    let connect_timeout = Duration::from_secs(10);
    let mut src = Qmp::connect(&opts.qmp, connect_timeout)?;
    let mut dst = match &opts.dest_qmp {
        Some(p) => Some(Qmp::connect(p, connect_timeout)?),
        None => None,
    };
    let params = MigrationParameters {
        max_bandwidth: Some(opts.max_bandwidth),
        downtime_limit_ms: opts.downtime_limit.map(|d| d.as_millis() as u64),
    };
    if let (Some(d), Some(uri)) = (dst.as_mut(), incoming) {
        d.migrate_incoming(uri)?;
        // Events from here on are this migration's.
        d.take_events()?;
    }
    src.set_parameters(&params)?;
    src.take_events()?;
    let start = Instant::now();
    src.migrate(outgoing)?;
    let mut progress = Progress { tty: std::io::stderr().is_terminal(), last_line: None, quiet: opts.quiet };
    let mut src_events = Vec::new();
    let watched = src.watch_migration(Duration::from_millis(100), |q, info| {
        src_events.extend(q.take_events()?);
        progress.show(info, start.elapsed());
        if opts.give_up_after.is_some_and(|g| start.elapsed() > g) {
            // The source VM goes on; QEMU kills its exec child.
            q.migrate_cancel()?;
            return Err(QmpError::MigrationFailed {
                status: MigrationStatus::Cancelled,
                desc: format!("not completed after {:?}: cancelled", start.elapsed()),
            });
        }
        Ok(())
    });
    let info = match watched {
        Ok(info) => info,
        Err(e) => {
            progress.end();
            return Err(match e {
                QmpError::MigrationFailed { status, desc } if desc.is_empty() => {
                    DriveError::Failed { status, desc: "no reason given".into() }
                }
                QmpError::MigrationFailed { status, desc } => DriveError::Failed { status, desc },
                e => e.into(),
            });
        }
    };
    src_events.extend(src.take_events()?);
    progress.show(&info, start.elapsed());
    progress.end();
    // The destination resumes right after it has read everything (its RESUME may follow the
    // source's completion by a moment).
    let true_downtime = match dst.as_mut() {
        Some(d) => {
            let resume = d.wait_event("RESUME", Duration::from_secs(30))?;
            src_events.extend(src.take_events()?);
            event(&src_events, "STOP").and_then(|stop| true_downtime(stop, &resume))
        }
        None => None,
    };
    let ram = info.ram.clone().unwrap_or_default();
    Ok(Report {
        total: Duration::from_millis(info.total_time_ms.unwrap_or(0)),
        qemu_downtime: Duration::from_millis(info.downtime_ms.unwrap_or(0)),
        true_downtime,
        ram_transferred: ram.transferred,
        ram_total: ram.total,
        dirty_syncs: ram.dirty_sync_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_uris_survive_the_shell() {
        let uri = exec_uri(
            Path::new("/usr/bin/xmigrate"),
            &Some(PathBuf::from("/run/xia/a b.sock")),
            &["send".into(), "RE".into(), "AD:0a".into(), "it's".into()],
        );
        assert_eq!(uri, r"exec:exec /usr/bin/xmigrate --socket '/run/xia/a b.sock' send RE AD:0a 'it'\''s'");
    }
}
