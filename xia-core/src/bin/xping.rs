//! `xping`: XCMP echo to a DAG, with iputils ping's flags, output and exit codes, plus `--gaps`:
//! the longest run of lost replies and the downtime it implies (lost x interval, +/- one
//! interval), the way the paper measures a migration's downtime.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use xia_core::api::{PingReply, Xia};
use xia_core::dag::Dag;
use xia_core::wire::xcmp::Message;

/// Send XCMP echo requests to an XIA address.
#[derive(Debug, Parser)]
#[command(name = "xping", version)]
struct Args {
    /// Stop after sending COUNT requests.
    #[arg(short = 'c', value_name = "COUNT")]
    count: Option<u64>,
    /// Seconds between requests (down to 0.001).
    #[arg(short = 'i', value_name = "INTERVAL", default_value_t = 1.0)]
    interval: f64,
    /// Seconds to wait for replies after the last request.
    #[arg(short = 'W', value_name = "TIMEOUT", default_value_t = 10.0)]
    timeout: f64,
    /// Stop after DEADLINE seconds, whatever was sent or received.
    #[arg(short = 'w', value_name = "DEADLINE")]
    deadline: Option<f64>,
    /// Quiet: only the summary.
    #[arg(short = 'q')]
    quiet: bool,
    /// Print a Unix timestamp before each line.
    #[arg(short = 'D')]
    timestamps: bool,
    /// Data bytes per request.
    #[arg(short = 's', value_name = "PACKETSIZE", default_value_t = 56)]
    size: usize,
    /// Report the longest run of lost replies and the downtime it implies.
    #[arg(long)]
    gaps: bool,
    /// The daemon's socket (default: $XIAD_SOCKET or /run/xia/xiad.sock).
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// The name server resolving a name given as destination (default: the one the host's AD
    /// announces).
    #[arg(long, value_name = "DAG")]
    name_server: Option<String>,
    /// Destination: a DAG (`RE AD:<hex> HID:<hex>` or `DAG 0 - AD:<hex> 1 - HID:<hex>`) or a
    /// name (`vm1.xia`).
    #[arg(required = true, num_args = 1.., value_name = "DESTINATION")]
    destination: Vec<String>,
}

/// What to ping: a DAG, or a name to resolve first (made once: its size costs nothing).
#[allow(clippy::large_enum_variant)]
enum Target {
    Dag(Dag),
    Name(xia_core::wire::names::Name),
}

struct Stats {
    sent: u64,
    received: HashSet<u64>,
    dups: u64,
    errors: u64,
    rtts: Vec<f64>,
}

fn stamp(on: bool) -> String {
    if !on {
        return String::new();
    }
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("[{}.{:06}] ", t.as_secs(), t.subsec_micros())
}

/// The 1-based request number for a 16-bit sequence number, nearest to the last one sent.
fn unwrap_seq(seq: u16, last_sent: u64) -> u64 {
    let base = last_sent & !0xffff;
    let mut k = base | u64::from(seq);
    if k > last_sent {
        k = k.saturating_sub(1 << 16);
    }
    k
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = args.destination.join(" ");
    let dst = match (text.parse::<Dag>(), text.parse()) {
        (Ok(d), _) => Target::Dag(d),
        (Err(_), Ok(name)) if args.destination.len() == 1 => Target::Name(name),
        (Err(e), _) => {
            eprintln!("xping: {text}: {e}");
            return ExitCode::from(2);
        }
    };
    if args.interval.is_nan() || args.interval < 0.001 || args.size < 8 || args.size > 65000 {
        eprintln!("xping: interval must be >= 0.001 s and size within 8..65000");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xping: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(ping(args, dst))
}

async fn ping(args: Args, dst: Target) -> ExitCode {
    let xia = args.socket.clone().map_or_else(Xia::default, Xia::at);
    let (dst, shown) = match dst {
        Target::Dag(d) => {
            let s = d.to_string().replace('\n', " ");
            (d, s)
        }
        Target::Name(n) => match resolve(&xia, args.name_server.as_deref(), &n).await {
            Ok(d) => {
                let s = format!("{n} ({})", d.to_string().replace('\n', " "));
                (d, s)
            }
            Err(e) => {
                eprintln!("xping: {n}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut pinger = match xia.pinger().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xping: {e}");
            return ExitCode::from(2);
        }
    };
    let name = shown;
    println!("PING {name} {}({}) bytes of data.", args.size, args.size + 8);
    let interval = Duration::from_secs_f64(args.interval);
    let start = Instant::now();
    let deadline = args.deadline.map(|d| start + Duration::from_secs_f64(d));
    let mut s = Stats { sent: 0, received: HashSet::new(), dups: 0, errors: 0, rtts: Vec::new() };
    let mut payload = vec![0u8; args.size];
    for (i, b) in payload.iter_mut().enumerate().skip(8) {
        *b = i as u8;
    }
    let mut next_send = start;
    let mut linger_until: Option<Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let more = args.count.is_none_or(|c| s.sent < c);
        if !more && linger_until.is_none() {
            linger_until = Some(Instant::now() + Duration::from_secs_f64(args.timeout));
        }
        if let Some(c) = args.count {
            if s.sent >= c && s.received.len() as u64 >= c {
                break;
            }
        }
        let stop_at = [deadline, linger_until].into_iter().flatten().min();
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = tokio::time::sleep_until(next_send.into()), if more => {
                // Send time in the first 8 bytes: the reply carries it back.
                let ns = start.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&ns.to_be_bytes());
                // Sequence numbers start at 1, as ping's do.
                if let Err(e) = pinger.send(&dst, (s.sent + 1) as u16, &payload).await {
                    eprintln!("xping: {e}");
                    return ExitCode::from(2);
                }
                s.sent += 1;
                next_send += interval;
                // A slow loop does not send bursts to catch up.
                if next_send < Instant::now() {
                    next_send = Instant::now();
                }
            }
            r = pinger.recv() => match r {
                Ok(PingReply::Echo { seq, from, data }) => {
                    let k = unwrap_seq(seq, s.sent).saturating_sub(1);
                    let dup = !s.received.insert(k);
                    if dup {
                        s.dups += 1;
                    }
                    let rtt_ms = if data.len() >= 8 {
                        let sent_ns = u64::from_be_bytes(data[..8].try_into().unwrap_or([0; 8]));
                        (start.elapsed().as_nanos() as u64).saturating_sub(sent_ns) as f64 / 1e6
                    } else {
                        0.0
                    };
                    if !dup {
                        s.rtts.push(rtt_ms);
                    }
                    if !args.quiet {
                        let from = from.to_string().replace('\n', " ");
                        println!(
                            "{}{} bytes from {from}: xcmp_seq={seq} time={rtt_ms:.3} ms{}",
                            stamp(args.timestamps),
                            data.len() + 8,
                            if dup { " (DUP!)" } else { "" }
                        );
                    }
                }
                Ok(PingReply::Error { seq, from, kind, code }) => {
                    s.errors += 1;
                    if !args.quiet {
                        let what = match kind {
                            Message::DstUnreachable => format!("Destination Unreachable (code {code})"),
                            Message::TimeExceeded => "Time to live exceeded".to_string(),
                            Message::Redirect => "Redirect".to_string(),
                            k => format!("XCMP type {} code {code}", u8::from(k)),
                        };
                        let from = from.to_string().replace('\n', " ");
                        println!("{}From {from} xcmp_seq={seq} {what}", stamp(args.timestamps));
                    }
                }
                Err(e) => {
                    eprintln!("xping: {e}");
                    return ExitCode::from(2);
                }
            },
            _ = tokio::time::sleep_until(stop_at.unwrap_or(far).into()), if stop_at.is_some() => break,
            _ = &mut ctrl_c => break,
        }
    }
    let elapsed = start.elapsed();
    let rx = s.received.len() as u64;
    println!();
    println!("--- {name} xping statistics ---");
    let loss = if s.sent == 0 { 0.0 } else { 100.0 * (s.sent - rx.min(s.sent)) as f64 / s.sent as f64 };
    let mut line = format!("{} packets transmitted, {rx} received", s.sent);
    if s.dups > 0 {
        line.push_str(&format!(", +{} duplicates", s.dups));
    }
    if s.errors > 0 {
        line.push_str(&format!(", +{} errors", s.errors));
    }
    line.push_str(&format!(", {loss:.0}% packet loss, time {}ms", elapsed.as_millis()));
    println!("{line}");
    if !s.rtts.is_empty() {
        let n = s.rtts.len() as f64;
        let min = s.rtts.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = s.rtts.iter().cloned().fold(0.0, f64::max);
        let avg = s.rtts.iter().sum::<f64>() / n;
        let mdev = (s.rtts.iter().map(|r| (r - avg) * (r - avg)).sum::<f64>() / n).sqrt();
        println!("rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms");
    }
    if args.gaps {
        // Longest run of requests without a reply, the paper's (n +/- 1) x interval.
        let (mut best, mut best_at, mut run, mut run_at) = (0u64, 0u64, 0u64, 0u64);
        for k in 0..s.sent {
            if s.received.contains(&k) {
                run = 0;
            } else {
                if run == 0 {
                    run_at = k;
                }
                run += 1;
                if run > best {
                    best = run;
                    best_at = run_at;
                }
            }
        }
        let iv = interval.as_secs_f64() * 1000.0;
        if best == 0 {
            println!("gaps: none (downtime < {iv:.3} ms)");
        } else {
            println!(
                "gaps: longest {best} lost (xcmp_seq {}..{}), downtime {:.3} ms +/- {iv:.3} ms",
                (best_at + 1) as u16,
                (best_at + best) as u16,
                best as f64 * iv
            );
        }
    }
    let short = args.deadline.is_some() && args.count.is_some_and(|c| rx < c);
    if rx == 0 || short {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The DAG `name` leads to, from `server` or the AD's name server.
async fn resolve(xia: &Xia, server: Option<&str>, name: &xia_core::wire::names::Name) -> Result<Dag, String> {
    let mut c = match server {
        Some(s) => {
            let d: Dag = s.parse().map_err(|e| format!("--name-server: {e}"))?;
            xia_core::api::NameClient::new(xia, d).await
        }
        None => xia.names().await,
    }
    .map_err(|e| e.to_string())?;
    c.resolve(name).await.map_err(|e| e.to_string())
}
