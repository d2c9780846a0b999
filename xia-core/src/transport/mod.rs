//! Transports as sans-IO state machines: no sockets, no clock; the caller passes time in and
//! moves the bytes (quinn-proto's model). Unit-tested over a simulated lossy link.

pub mod chunk;
pub(crate) mod model;
pub mod ranges;
pub mod ring;
pub mod rtt;
#[cfg(test)]
mod sim_tests;
pub mod stream;

/// How a transport sets its window (STREAM's congestion window, CHUNK's window of requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// From a model of the path (delivery rate and minimum RTT, as BBR): loss that is not
    /// congestion leaves the window alone ([`model`]).
    #[default]
    Model,
    /// Loss-driven (Reno-style AIMD): the window halves once per round trip with losses.
    Reno,
}
