//! What every XIA node needs, host or router: a rate limiter for what it answers strangers,
//! its wall clock for signed messages, frames it builds itself (XIP, XARP) and its answers to
//! XARP requests and XCMP echo.

pub mod clock;
pub mod frames;
pub mod ratelimit;

pub use clock::WallClock;
pub use frames::{echo_reply, xarp_frame, xip_frame, XarpResponder};
pub use ratelimit::TokenBucket;
