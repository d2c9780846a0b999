//! Topologies in network namespaces (the paper's Fig. 1a/1b, grids, trees), experiments and plots.
//!
//! The harness every end-to-end test and experiment builds on:
//! - [`Netns`]: a network namespace that is deleted when the guard goes, even when a test panics;
//!   [`veth`] joins two of them; [`offloads_off`], [`nft_loss`] and [`nft_loss_egress`] shape a
//!   link. This kernel has no `tc netem`; the `xia-impair` binary (logic in [`impair`]) is the
//!   user-space relay that replaces it for loss, duplication, reordering and delay.
//! - [`Child`]: a process that is stopped when the guard goes, whose stdout a test waits on line
//!   by line ("listening", "ready") instead of sleeping, and whose stderr it can print.
//! - [`require_root`]: the first line of every test that needs namespaces.

pub mod impair;
mod netns;
mod process;

pub use netns::{nft_loss, nft_loss_egress, offloads_off, veth, Netns};
pub use process::Child;

/// True when running as root. Otherwise, under `CI=true` it panics (CI must run every test),
/// elsewhere it prints `SKIPPED: needs root` to stderr and returns false so the test can return.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root (network namespaces, veth, raw sockets); CI=true forbids skipping it");
    }
    eprintln!("SKIPPED: needs root");
    false
}
