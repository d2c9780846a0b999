//! Links that carry Ethernet frames: a Linux AF_PACKET socket bound to one interface, and an
//! in-memory simulated link with seeded impairments for deterministic tests.

pub mod sim;
