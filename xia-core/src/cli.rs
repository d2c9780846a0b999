//! What the project's command-line tools share: logging set-up (logs go to stderr, so that a
//! tool's stdout stays its own output: `xmigrate recv`'s stdout is the migration stream).

/// Installs the log subscriber: `RUST_LOG` (a level: error, warn, info, debug, trace) if set,
/// else info, raised by each `-v` and lowered by each `-q`.
pub fn init_logging(verbose: u8, quiet: u8) {
    use tracing::Level;
    let levels = [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE];
    let base = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| levels.iter().position(|l| l.as_str().eq_ignore_ascii_case(v.trim())))
        .unwrap_or(2);
    let i = (base + usize::from(verbose)).saturating_sub(usize::from(quiet)).min(levels.len() - 1);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(levels[i])
        .with_target(false)
        .try_init();
}

/// The daemons' log flags (`-v`, `-q`), for `#[command(flatten)]`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogArgs {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

impl LogArgs {
    /// Installs the log subscriber at the level these flags ask for ([`init_logging`]).
    pub fn init(&self) {
        init_logging(self.verbose, self.quiet);
    }
}
