//! What QEMU needs, as a command (`qemu-hooks`) and a small library the tests use.
//!
//! - [`image`]: a bootable guest built from parts fetched and cached (Debian's cloud kernel via
//!   `apt-get download`, busybox-static, the virtio modules, an `/init`, the caller's files),
//!   nothing installed on the host; keyed by a hash of every input.
//! - [`qmp`]: a blocking QMP client: commands with typed errors, events with their timestamps,
//!   the migration commands and `query-migrate` as a struct.
//! - [`load`]: the guest workload (`guest-load`): a tick counter, a checksummed memory region
//!   and an optional dirtier, so a migration's continuity and integrity show on the console.

pub mod image;
pub mod load;
pub mod qmp;

pub use image::{GuestImage, ImageBuilder, ImageError};
pub use qmp::{MigrationInfo, MigrationStatus, Qmp, QmpError, QmpEvent};
