//! What QEMU needs, as a command (`qemu-hooks`) and a small library the tests use.
//!
//! - [`load`]: the guest workload (`guest-load`): a tick counter, a checksummed memory region
//!   and an optional dirtier, so a migration's continuity and integrity show on the console.

pub mod load;
