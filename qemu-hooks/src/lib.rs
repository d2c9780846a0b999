//! What QEMU needs, as a command (`qemu-hooks`) and a small library the tests use.
//!
//! - [`image`]: a bootable guest built from parts fetched and cached (Debian's cloud kernel via
//!   `apt-get download`, busybox-static, the virtio modules, an `/init`, the caller's files),
//!   nothing installed on the host; keyed by a hash of every input.
//! - `vm` (feature `vm`): QEMU with one command line for both sides of a migration (TCG by default), in a
//!   network namespace, as a guard that stops it; its serial console read from a file.
//! - [`qmp`]: a blocking QMP client: commands with typed errors, events with their timestamps,
//!   the migration commands and `query-migrate` as a struct.
//! - `tap` (feature `vm`): tap devices and bridges as guards.
//! - [`load`]: the guest workload (`guest-load`): a tick counter, a checksummed memory region
//!   and an optional dirtier, so a migration's continuity and integrity show on the console.
//!
//! With the `vm` feature:
//!
//! ```no_run
//! # #[cfg(feature = "vm")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use qemu_hooks::image::{build_static_bin, default_cache_dir, ImageBuilder};
//! use qemu_hooks::load::LoadArgs;
//! use qemu_hooks::vm::{Vm, VmConfig};
//!
//! let load = build_static_bin("qemu-hooks", "guest-load")?;
//! let image = ImageBuilder::new(default_cache_dir()).guest_load(&load, &LoadArgs::default()).build()?;
//! let mut vm = Vm::start(&image, &VmConfig::new("/tmp/vm", "a").mem_mib(128), None)?;
//! let mut qmp = vm.qmp(Duration::from_secs(10))?;
//! vm.wait_for_serial(|l| l.starts_with("tick "), Duration::from_secs(30))?;
//! println!("{:?}", qmp.query_status()?.status);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "vm"))]
//! # fn main() {}
//! ```

pub mod image;
pub mod load;
pub mod qmp;
#[cfg(feature = "vm")]
pub mod tap;
#[cfg(feature = "vm")]
pub mod vm;

pub use image::{GuestImage, ImageBuilder, ImageError};
pub use qmp::{MigrationInfo, MigrationStatus, Qmp, QmpError, QmpEvent};
#[cfg(feature = "vm")]
pub use tap::{Bridge, Tap};
#[cfg(feature = "vm")]
pub use vm::{kvm_boots, Accel, Vm, VmConfig, VmError};
