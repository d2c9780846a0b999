//! What happens to the host, pushed by the daemon as it happens.

use std::time::Duration;

use super::conn::{deadline, unexpected, within, Conn};
use super::XiaError;
use crate::ipc::{Event, HostInfo, Response};

/// The host's events ([`Event`]: attached to an AD, registered, DAG changed, gateway lost, link
/// down or up), in the order they happened, from the moment of [`super::Xia::events`]; its
/// [`EventStream::info`] is how the host stood then, so nothing falls between a look at the
/// host and the first event.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) conn: Conn,
    pub(crate) info: HostInfo,
    pub(crate) timeout: Option<Duration>,
}

impl EventStream {
    /// The host as it was when the stream started.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// How long [`EventStream::next`] waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<Event, XiaError> {
        let conn = &mut self.conn;
        within(deadline(self.timeout), async move {
            match conn.recv().await? {
                (Response::Event(e), _) => Ok(e),
                (Response::Error { code, message }, _) => Err(XiaError::from_code(code, message)),
                (m, _) => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Waits for the first event `want` accepts, skipping the others.
    pub async fn wait_for(&mut self, mut want: impl FnMut(&Event) -> bool) -> Result<Event, XiaError> {
        let d = deadline(self.timeout);
        let saved = self.timeout.take();
        let r = within(d, async {
            loop {
                let e = self.next().await?;
                if want(&e) {
                    return Ok(e);
                }
            }
        })
        .await;
        self.timeout = saved;
        r
    }
}
