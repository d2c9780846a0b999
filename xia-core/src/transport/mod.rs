//! Transports as sans-IO state machines: no sockets, no clock; the caller passes time in and
//! moves the bytes (quinn-proto's model). Unit-tested over a simulated lossy link.

pub mod chunk;
pub mod ranges;
pub mod ring;
pub mod rtt;
#[cfg(test)]
mod sim_tests;
pub mod stream;
