//! `xnsd`: the name server. A DGRAM service at `SID_NS` on the host's `xiad`: records taken are
//! written to the store and synced before they are acknowledged (one sync for all the requests
//! of a turn); what the store held is served again after a restart, even after `kill -9`.
//! Prints `xnsd ready dag=<DAG> names=<N>` on stdout once it serves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use xia_core::api::Xia;
use xia_core::dag::Dag;
use xia_core::sys::wall_ms;
use xia_core::xid::SID_NS;
use xia_nameservice::{NameTable, Service, Store, TableConfig};

/// The XIA name server.
#[derive(Debug, Parser)]
#[command(name = "xnsd", version)]
struct Args {
    /// The host daemon's socket (default: $XIAD_SOCKET or its default path).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The store: the log of every record taken.
    #[arg(long, default_value = "/var/lib/xia/names.log")]
    store: PathBuf,
    /// Names held at most.
    #[arg(long, default_value_t = 1 << 20)]
    max_names: usize,
    /// Longest life of a record, in seconds (a record asking for more gets this).
    #[arg(long, default_value_t = 86_400)]
    max_ttl_secs: u32,
    #[command(flatten)]
    log: xia_core::cli::LogArgs,
}

/// Requests handled per turn at most (one sync for all their records).
const BATCH: usize = 256;

fn main() -> ExitCode {
    let args = Args::parse();
    args.log.init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xnsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xnsd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = TableConfig {
        max_names: args.max_names,
        max_ttl_ms: args.max_ttl_secs.saturating_mul(1000),
        ..TableConfig::default()
    };
    let (mut store, entries) = Store::open(&args.store)?;
    let mut table = NameTable::new(cfg);
    for e in entries {
        table.insert(e);
    }
    table.expire(wall_ms());
    let xia = args.socket.map_or_else(Xia::default, Xia::at);
    let sock = xia.bind_dgram(Some(SID_NS)).await?;
    let max_reply = sock.max_datagram();
    let mut service = Service::new(table, max_reply);
    println!("xnsd ready dag={} names={}", sock.dag().to_dag_string().replace('\n', ""), service.table.len());
    let (mut tx, mut rx) = sock.split();
    // Datagrams come in on a task of their own; each turn takes all that are waiting.
    let (queue_tx, mut queue) = mpsc::channel::<(Vec<u8>, Dag)>(4 * BATCH);
    let receiver = tokio::spawn(async move {
        loop {
            match rx.recv_from().await {
                Ok(d) => {
                    if queue_tx.send(d).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            d = queue.recv() => d,
            _ = tick.tick() => {
                let now = wall_ms();
                let gone = service.table.expire(now);
                if !gone.is_empty() {
                    tracing::debug!("{} names expired", gone.len());
                }
                if store.wants_compaction(service.table.len()) {
                    store.compact(service.table.entries())?;
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        };
        let Some(first) = first else {
            // The receiving task ended: its error says why.
            return match receiver.await {
                Ok(Err(e)) => Err(e.into()),
                _ => Err("the datagram socket closed".into()),
            };
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let now = wall_ms();
        let mut persist = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for (data, from) in batch {
            let h = service.handle(now, &data);
            persist.extend(h.persist);
            if let Some(r) = h.reply {
                replies.push((r, from));
            }
        }
        // Durable before acknowledged: a store that cannot write ends the server (what it
        // holds in memory may not be on disk; a restart serves what is).
        if !persist.is_empty() {
            store.append(&persist)?;
        }
        for (r, from) in replies {
            let mut to = from;
            to.clear_visited();
            if let Err(e) = tx.send_to(&r, &to).await {
                tracing::debug!("answer not sent: {e}");
            }
        }
    }
    receiver.abort();
    let s = service.stats();
    tracing::info!("stopping: {} requests answered, {} names held", s.requests, service.table.len());
    Ok(())
}
