//! `xia`: the operator's and tester's tool: keys, DAG text, the host's addresses and counters,
//! and simple applications (stream and chunk transfers with checksums, a datagram echo) to
//! exercise a host stack. Status lines go to stdout; logs to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xia_core::api::{Event, FetchOptions, Manifest, Xia, XiaError};
use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::rng::Rng;
use xia_core::xid::{Principal, Xid};

#[derive(Debug, Parser)]
#[command(name = "xia", version, about = "XIA keys, addresses and test applications")]
struct Args {
    /// The daemon's socket (default: $XIAD_SOCKET or /run/xia/xiad.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Creates a key file (refuses to overwrite) and prints the XIDs it owns.
    Keygen { file: PathBuf },
    /// Prints the XIDs a key file owns.
    Keyshow { file: PathBuf },
    /// Checks a DAG and prints it in both text forms.
    Dag { text: Vec<String> },
    /// Prints the CID of a file's content.
    Cid { file: PathBuf },
    /// This host's addresses.
    Info,
    /// The daemon's counters.
    Stats,
    /// Prints the host's state, then a line per event as it happens (attached, registered, dag,
    /// gateway-lost, link down/up), like `ip monitor`.
    Events,
    /// Waits until the host is registered with a gateway (exit 0), or the timeout (exit 1).
    Wait {
        /// What to wait for.
        #[arg(value_enum)]
        what: WaitFor,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// After a move: asks the router at ROUTER (the old gateway's DAG, `RE AD HID`) to send
    /// traffic for this host's HID on to the AD it is registered in now. Signed with the host's
    /// key, carrying the new AD's receipt.
    PatchRoute {
        /// Seconds the router keeps the patched route.
        #[arg(long, default_value_t = 600)]
        lifetime: u64,
        /// The old gateway router's DAG.
        #[arg(required = true, num_args = 1..)]
        router: Vec<String>,
    },
    /// Accepts one stream and reads it to the end: prints `listening <DAG>`, then the byte
    /// count, SHA-256 and rate.
    StreamRecv {
        /// SID to listen on (default: a fresh one).
        #[arg(long)]
        sid: Option<Xid>,
        /// Also write the bytes to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the SHA-256 (goodput measurements, like iperf3).
        #[arg(long)]
        no_sha: bool,
    },
    /// Connects and sends pseudo-random bytes (or a file), then prints count, SHA-256 and rate.
    StreamSend {
        /// Bytes to send (ignored with --file).
        #[arg(long, default_value_t = 1 << 20)]
        bytes: u64,
        /// Seed of the pseudo-random bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Send this file instead.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Skip the SHA-256 (goodput measurements, like iperf3).
        #[arg(long)]
        no_sha: bool,
        /// Destination DAG (intent: the receiver's SID), or a name.
        dag: Vec<String>,
    },
    /// Publishes pseudo-random content as chunks, prints a manifest (`<CID> <DAG>` per line,
    /// DAG in one-line `DAG` form) and the SHA-256 of the whole, then serves until killed.
    ChunkServe {
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        #[arg(long, default_value_t = 1 << 20)]
        chunk_size: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the manifest here instead of stdout.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Mark the chunks no-store: routers on the way forward them and never cache them.
        #[arg(long)]
        no_store: bool,
    },
    /// Fetches every chunk of a manifest (pipelined), prints count, SHA-256 and rate.
    ChunkFetch {
        manifest: PathBuf,
        /// Skip the SHA-256 of the whole (each chunk is still checked against its CID).
        #[arg(long)]
        no_sha: bool,
    },
    /// Echoes datagrams back to their sender; prints `echoing <DAG>`.
    DgramEcho {
        #[arg(long)]
        sid: Option<Xid>,
    },
    /// Sends COUNT datagrams to an echo service and prints how many came back.
    DgramPing {
        #[arg(long, default_value_t = 100)]
        count: u32,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds to wait for the last echoes.
        #[arg(long, default_value_t = 2.0)]
        wait: f64,
        dag: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WaitFor {
    /// A gateway confirmed the host's registration.
    Registered,
}

fn event_line(e: &Event) -> String {
    match e {
        Event::Attached { ad, router } => format!("attached ad={ad} router={router}"),
        Event::Registered { ad, router } => format!("registered ad={ad} router={router}"),
        Event::DagChanged { dag } => format!("dag {}", one_line(dag)),
        Event::GatewayLost { ad, router } => format!("gateway-lost ad={ad} router={router}"),
        Event::LinkDown => "link down".into(),
        Event::LinkUp => "link up".into(),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("xia: {e}");
    ExitCode::from(1)
}

fn parse_dag(words: &[String]) -> Result<Dag, String> {
    let t = words.join(" ");
    t.parse::<Dag>().map_err(|e| format!("{t}: {e}"))
}

/// A destination given as a DAG, or as a name resolved by the AD's name server.
async fn destination(xia: &Xia, words: &[String]) -> Result<Dag, String> {
    match (parse_dag(words), words) {
        (Ok(d), _) => Ok(d),
        (Err(e), [one]) => match one.parse::<xia_core::wire::names::Name>() {
            Ok(name) => {
                let mut names = xia.names().await.map_err(|e| format!("{name}: {e}"))?;
                names.resolve(&name).await.map_err(|e| format!("{name}: {e}"))
            }
            Err(_) => Err(e),
        },
        (Err(e), _) => Err(e),
    }
}

fn line(s: impl AsRef<str>) {
    let mut o = std::io::stdout();
    let _ = writeln!(o, "{}", s.as_ref());
    let _ = o.flush();
}

fn one_line(d: &Dag) -> String {
    d.to_dag_string().replace('\n', "")
}

fn rate(bytes: u64, t: Instant) -> String {
    let s = t.elapsed().as_secs_f64().max(1e-9);
    format!("{bytes} bytes in {s:.3} s, {:.3} Gbit/s", bytes as f64 * 8.0 / s / 1e9)
}

fn main() -> ExitCode {
    let args = Args::parse();
    xia_core::cli::init_logging(0, 0);
    let xia = args.socket.clone().map_or_else(Xia::default, Xia::at);
    match args.cmd {
        Cmd::Keygen { file } => {
            let k = match Keypair::generate() {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            if let Err(e) = k.save(&file) {
                return fail(e);
            }
            for p in [Principal::Hid, Principal::Sid, Principal::Ad] {
                line(k.xid(p).to_string());
            }
            ExitCode::SUCCESS
        }
        Cmd::Keyshow { file } => match Keypair::load(&file) {
            Ok(k) => {
                for p in [Principal::Hid, Principal::Sid, Principal::Ad] {
                    line(k.xid(p).to_string());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Dag { text } => match parse_dag(&text) {
            Ok(d) => {
                if let Some(re) = d.to_re_string() {
                    line(re);
                }
                line(d.to_dag_string());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Cid { file } => match std::fs::read(&file) {
            Ok(b) => {
                line(Xid::cid_of(&b).to_string());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", file.display())),
        },
        cmd => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            match rt.block_on(run(xia, cmd)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

/// Where a sender's bytes come from: fills the buffer, returns how much (0 at the end).
type Source = dyn FnMut(&mut [u8]) -> std::io::Result<usize>;

/// Pseudo-random bytes, the same for the same seed: one block of a prime length made once and
/// repeated (making fresh bytes would cost the sender more than sending them; a prime period
/// keeps data delivered at a wrong offset from matching by accident).
struct Pattern {
    block: Vec<u8>,
    at: usize,
}

impl Pattern {
    const PERIOD: usize = 1_048_573;

    fn new(seed: u64) -> Pattern {
        let mut block = vec![0u8; Self::PERIOD];
        Rng::new(seed).fill(&mut block);
        Pattern { block, at: 0 }
    }

    fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            let n = buf.len().min(self.block.len() - self.at);
            let (head, rest) = buf.split_at_mut(n);
            head.copy_from_slice(&self.block[self.at..self.at + n]);
            self.at = (self.at + n) % self.block.len();
            buf = rest;
        }
    }
}

async fn run(xia: Xia, cmd: Cmd) -> Result<(), String> {
    let e = |e: XiaError| e.to_string();
    let io = |e: std::io::Error| e.to_string();
    match cmd {
        Cmd::Info => {
            let i = xia.info().await.map_err(e)?;
            line(format!("hid {}", i.hid));
            line(format!("dag {}", one_line(&i.dag)));
            line(format!("ad {}", i.ad.map_or("-".into(), |a| a.to_string())));
            line(format!("gateway {}", i.gateway.map_or("-".into(), |g| g.to_string())));
            line(format!("name-server {}", i.name_server.as_ref().map_or("-".into(), one_line)));
            line(format!("mtu {}", i.mtu));
        }
        Cmd::Stats => {
            for (k, v) in xia.stats().await.map_err(e)?.0 {
                line(format!("{k} {v}"));
            }
        }
        Cmd::Events => {
            let mut ev = xia.events().await.map_err(e)?;
            let i = ev.info();
            line(format!(
                "state dag {} gateway={} registered={} link={}",
                one_line(&i.dag),
                i.gateway.map_or("-".into(), |g| g.to_string()),
                if i.registered { "yes" } else { "no" },
                if i.link_up { "up" } else { "down" },
            ));
            loop {
                line(event_line(&ev.next().await.map_err(e)?));
            }
        }
        Cmd::Wait { what: WaitFor::Registered, timeout } => {
            let mut ev = xia.events().await.map_err(e)?;
            if !ev.info().registered {
                ev.set_timeout(Some(Duration::from_secs_f64(timeout)));
                ev.wait_for(|x| matches!(x, Event::Registered { .. })).await.map_err(|err| match err {
                    XiaError::TimedOut => format!("not registered within {timeout} s"),
                    err => err.to_string(),
                })?;
            }
            line(format!("registered dag {}", one_line(&xia.info().await.map_err(e)?.dag)));
        }
        Cmd::PatchRoute { lifetime, router } => {
            let router = parse_dag(&router)?;
            xia.patch_route(&router, Duration::from_secs(lifetime)).await.map_err(e)?;
            line(format!("patch sent to {}", one_line(&router)));
        }
        Cmd::StreamRecv { sid, out, no_sha } => {
            let mut l = xia.listen(sid).await.map_err(e)?;
            line(format!("listening {}", one_line(l.dag())));
            let (mut s, peer) = l.accept().await.map_err(e)?;
            line(format!("accepted {}", one_line(&peer)));
            let mut file = match out {
                Some(p) => Some(std::fs::File::create(&p).map_err(|err| format!("{}: {err}", p.display()))?),
                None => None,
            };
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            let t = Instant::now();
            loop {
                // A read ends in end of file only for the sender's orderly close: a stream cut
                // short (reset, timed out, a daemon gone) is an error, not a short file.
                let n = match s.read(&mut buf).await {
                    Ok(n) => n,
                    Err(err) => {
                        return Err(format!("stream failed after {total} bytes: {}", XiaError::from_io(err)));
                    }
                };
                if n == 0 {
                    break;
                }
                if !no_sha {
                    h.update(&buf[..n]);
                }
                if let Some(f) = file.as_mut() {
                    f.write_all(&buf[..n]).map_err(io)?;
                }
                total += n as u64;
            }
            line(format!("received {}", rate(total, t)));
            line(format!("sha256 {:x}", h.finalize()));
        }
        Cmd::StreamSend { bytes, seed, file, no_sha, dag } => {
            let dst = destination(&xia, &dag).await?;
            let mut s = xia.connect(&dst).await.map_err(e)?;
            line(format!("connected {}", one_line(s.local_dag())));
            let mut h = Sha256::new();
            let t = Instant::now();
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            let mut src: Box<Source> = match file {
                Some(p) => {
                    let mut f = std::fs::File::open(&p).map_err(|err| format!("{}: {err}", p.display()))?;
                    Box::new(move |b| std::io::Read::read(&mut f, b))
                }
                None => {
                    let mut pat = Pattern::new(seed);
                    let mut left = bytes;
                    Box::new(move |b| {
                        let n = (b.len() as u64).min(left) as usize;
                        pat.fill(&mut b[..n]);
                        left -= n as u64;
                        Ok(n)
                    })
                }
            };
            loop {
                let n = src(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                if !no_sha {
                    h.update(&buf[..n]);
                }
                if let Err(err) = s.write_all(&buf[..n]).await {
                    return Err(format!("stream failed after {total} bytes: {}", XiaError::from_io(err)));
                }
                total += n as u64;
            }
            s.shutdown().await.map_err(io)?;
            // Wait for the receiver's end of stream: everything was delivered.
            let mut rest = [0u8; 1];
            s.read(&mut rest)
                .await
                .map_err(|err| format!("stream failed after {total} bytes: {}", XiaError::from_io(err)))?;
            line(format!("sent {}", rate(total, t)));
            line(format!("sha256 {:x}", h.finalize()));
        }
        Cmd::ChunkServe { bytes, chunk_size, seed, manifest, no_store } => {
            let mut c = xia.chunks().await.map_err(e)?;
            if no_store {
                c.set_no_store().await.map_err(e)?;
            }
            let mut pat = Pattern::new(seed);
            let mut h = Sha256::new();
            let size = chunk_size.max(1);
            let chunks = (0..bytes.div_ceil(size)).map(|i| {
                let mut buf = vec![0u8; (bytes - i * size).min(size) as usize];
                pat.fill(&mut buf);
                h.update(&buf);
                buf
            });
            let m = c.put_iter(chunks).await.map_err(e)?;
            match manifest {
                Some(p) => {
                    std::fs::write(&p, m.to_string()).map_err(|err| format!("{}: {err}", p.display()))?
                }
                None => print!("{m}"),
            }
            line(format!("serving {} chunks", m.chunks.len()));
            line(format!("sha256 {:x}", h.finalize()));
            // Serve until killed.
            std::future::pending::<()>().await;
        }
        Cmd::ChunkFetch { manifest, no_sha } => {
            let text =
                std::fs::read_to_string(&manifest).map_err(|err| format!("{}: {err}", manifest.display()))?;
            let m: Manifest = text.parse().map_err(|err| format!("{}: {err}", manifest.display()))?;
            let mut c = xia.chunks().await.map_err(e)?;
            let t = Instant::now();
            let mut h = Sha256::new();
            let mut fetch = c.fetch_manifest(&m, FetchOptions::default());
            while let Some(chunk) = fetch.next().await {
                let data = chunk.map_err(|err| {
                    format!("chunk {} of {}: {err}", fetch.delivered_chunks() + 1, m.chunks.len())
                })?;
                if !no_sha {
                    h.update(&data);
                }
            }
            line(format!("fetched {} in {} chunks", rate(fetch.delivered_bytes(), t), m.chunks.len()));
            line(format!("sha256 {:x}", h.finalize()));
        }
        Cmd::DgramEcho { sid } => {
            let mut d = xia.bind_dgram(sid).await.map_err(e)?;
            line(format!("echoing {}", one_line(d.dag())));
            loop {
                let (data, from) = d.recv_from().await.map_err(e)?;
                d.send_to(&data, &from).await.map_err(e)?;
            }
        }
        Cmd::DgramPing { count, size, wait, dag } => {
            let dst = destination(&xia, &dag).await?;
            let mut d = xia.bind_dgram(None).await.map_err(e)?;
            let mut got = std::collections::HashSet::new();
            for i in 0..count {
                let mut b = vec![0u8; size.max(4)];
                b[..4].copy_from_slice(&i.to_be_bytes());
                d.send_to(&b, &dst).await.map_err(e)?;
            }
            let until = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(wait);
            while got.len() < count as usize {
                match tokio::time::timeout_at(until, d.recv_from()).await {
                    Ok(Ok((data, _))) if data.len() >= 4 => {
                        got.insert(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Err(err.to_string()),
                    Err(_) => break,
                }
            }
            line(format!("sent {count} received {}", got.len()));
        }
        Cmd::Keygen { .. } | Cmd::Keyshow { .. } | Cmd::Dag { .. } | Cmd::Cid { .. } => {
            unreachable!("handled before")
        }
    }
    Ok(())
}
