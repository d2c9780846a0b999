//! XIA router: per-principal forwarding with fallback, AD beacons, routes between ADs learned
//! from neighbours' beacons and signed distance vectors, authenticated HID registration and
//! route patching, and an on-path chunk cache.
//!
//! [`router::Router`] is the whole router as a sans-IO state machine; the `xia-router` binary
//! runs it on AF_PACKET ports with batched I/O and an admin socket.

pub mod admin;
pub mod admin_server;
pub mod daemon;
pub mod router;
pub mod warmup;
pub mod xdp;

#[cfg(test)]
mod tests;
