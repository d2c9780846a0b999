//! `xns`: the name service from the command line. The server is `--server DAG`, or the one the
//! host's AD announces in its beacons (`xia info`'s name server).
//!
//! ```text
//! xns resolve vm1.xia                          # the DAG (one line, `DAG ...`)
//! xns register vm1.xia [DAG]                   # this host's DAG and key (in xiad); --ttl-secs
//! xns register cal.vm1.xia -k svc.key DAG      # a service's own key, for its SID
//! xns delete vm1.xia
//! xns reverse HID:<hex>                        # names leading to a HID or SID
//! xns list
//! xns stats                                    # the server's counters
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xia_core::api::{NameClient, Xia};
use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::wire::names::Name;
use xia_core::xid::Xid;

/// The XIA name service client.
#[derive(Debug, Parser)]
#[command(name = "xns", version)]
struct Args {
    /// The host daemon's socket (default: $XIAD_SOCKET or its default path).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The name server's DAG (default: the one the AD's beacons announce).
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Prints the DAG a name leads to.
    Resolve { name: Name },
    /// Binds a name to a DAG (default: this host's), signed by the key owning the DAG's intent
    /// (default: the host's, through xiad).
    Register {
        name: Name,
        /// The DAG (`RE ...` or `DAG ...`); default: the host's.
        dag: Vec<String>,
        /// A key file (a service's own, for its SID); default: the host's key, in xiad.
        #[arg(short, long)]
        key: Option<PathBuf>,
        /// How long the server keeps it.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// Deletes a name (signed by its key; default: the host's, in xiad).
    Delete {
        name: Name,
        #[arg(short, long)]
        key: Option<PathBuf>,
    },
    /// The names leading to a HID or SID.
    Reverse { xid: Xid },
    /// Every name.
    List,
    /// The server's counters.
    Stats,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xns: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xns: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let xia = args.socket.map_or_else(Xia::default, Xia::at);
    let server: Dag = match args.server {
        Some(s) => s.parse()?,
        None => {
            xia.info().await?.name_server.ok_or("no name server: the AD announces none; give --server")?
        }
    };
    let mut c = NameClient::new(&xia, server).await?;
    c.max_cache = Duration::ZERO;
    match args.cmd {
        Cmd::Resolve { name } => {
            let r = c.lookup(&name).await?;
            let dag = r.dag.ok_or("deleted")?;
            println!("{}", dag.to_dag_string().replace('\n', ""));
        }
        Cmd::Register { name, dag, key, ttl_secs } => {
            let dag: Dag = match dag.is_empty() {
                true => xia.info().await?.dag,
                false => dag.join(" ").parse()?,
            };
            let ttl = Duration::from_secs(ttl_secs);
            match key {
                Some(k) => c.put(&Keypair::load(&k)?, name.clone(), Some(dag.clone()), ttl).await?,
                None => c.put_as_host(&xia, name.clone(), Some(dag.clone()), ttl).await?,
            }
            println!("{name} {}", dag.to_dag_string().replace('\n', ""));
        }
        Cmd::Delete { name, key } => match key {
            Some(k) => c.put(&Keypair::load(&k)?, name, None, Duration::ZERO).await?,
            None => c.put_as_host(&xia, name, None, Duration::ZERO).await?,
        },
        Cmd::Reverse { xid } => {
            for r in c.reverse(xid).await? {
                println!("{}", r.name);
            }
        }
        Cmd::Stats => {
            for (k, v) in c.stats().await? {
                println!("{k} {v}");
            }
        }
        Cmd::List => {
            for r in c.list().await? {
                let dag = r.dag.map(|d| d.to_dag_string().replace('\n', "")).unwrap_or_default();
                println!("{} {dag}", r.name);
            }
        }
    }
    Ok(())
}
