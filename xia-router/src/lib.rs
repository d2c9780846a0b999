//! XIA router: per-principal forwarding with fallback, AD beacons, routes learned from
//! neighbour routers, authenticated HID registration and route patching.
//!
//! [`router::Router`] is the whole router as a sans-IO state machine; the `xia-router` binary
//! runs it on AF_PACKET ports with batched I/O and an admin socket.

pub mod admin;
pub mod daemon;
pub mod router;

#[cfg(test)]
mod tests;
