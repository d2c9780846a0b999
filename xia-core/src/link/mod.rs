//! Links that carry Ethernet frames: a Linux AF_PACKET socket bound to one interface, and an
//! in-memory simulated link with seeded impairments for deterministic tests.

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod sim;
