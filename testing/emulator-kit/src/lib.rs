//! What kbsync's service emulators (`msgraph-emulator`, `gdrive-emulator`) share: their clock, which
//! tests move forward instead of sleeping ([`EmulatorClock`]), and how they bind and serve
//! ([`Listener`]).

use std::net::SocketAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Wall-clock-like time that tests can advance. Every expiry an emulator measures (tokens, codes,
/// download URLs, change cursors) is measured on it.
#[derive(Debug)]
pub struct EmulatorClock {
    start: DateTime<Utc>,
    started_at: Instant,
    frozen: bool,
    offset: Mutex<chrono::Duration>,
}

impl EmulatorClock {
    /// A clock starting at `start`; unless `frozen`, it also follows real elapsed time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the emulator clock follows real time unless frozen"
    )]
    pub fn new(start: DateTime<Utc>, frozen: bool) -> Self {
        Self {
            start,
            started_at: Instant::now(),
            frozen,
            offset: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// The emulator's current time.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock();
        let real = if self.frozen {
            chrono::Duration::zero()
        } else {
            chrono::Duration::from_std(self.started_at.elapsed()).unwrap_or_else(|_| chrono::Duration::zero())
        };
        self.start + real + offset
    }

    /// Moves the clock forward (or backward for a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        *self.offset.lock() += by;
    }

    /// Puts the clock back to its start offset.
    pub fn reset(&self) {
        *self.offset.lock() = chrono::Duration::zero();
    }
}

/// The real current time, whole seconds: where an emulator clock starts unless told otherwise.
#[expect(
    clippy::disallowed_methods,
    reason = "the emulator's default start is the real time"
)]
pub fn wall_clock_whole_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

/// A bound listening socket and the base URL the emulator advertises for it.
pub struct Listener {
    pub listener: tokio::net::TcpListener,
    /// The address bound (port 0 resolved).
    pub addr: SocketAddr,
    /// `public_base_url` without a trailing slash, or `http://` + the bound address (loopback
    /// when bound to an unspecified address).
    pub base_url: String,
}

impl Listener {
    pub async fn bind(addr: SocketAddr, public_base_url: Option<&str>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let base_url = public_base_url
            .map_or_else(|| format!("http://{host}"), str::to_owned)
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            listener,
            addr,
            base_url,
        })
    }

    /// Serves `router` on a task of its own until `stop` is cancelled (then shuts down gracefully).
    pub fn serve(self, router: axum::Router, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _ = axum::serve(self.listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced_and_reset_puts_it_back() {
        let start: DateTime<Utc> = "2026-03-01T09:00:00Z".parse().unwrap();
        let clock = EmulatorClock::new(start, true);
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::seconds(90));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        clock.reset();
        assert_eq!(clock.now(), start);
    }

    #[tokio::test]
    async fn a_listener_on_an_unspecified_address_advertises_loopback_and_a_public_url_loses_its_slash() {
        let l = Listener::bind(SocketAddr::from(([0, 0, 0, 0], 0)), None)
            .await
            .unwrap();
        assert_eq!(l.base_url, format!("http://127.0.0.1:{}", l.addr.port()));
        let l = Listener::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some("https://emu.example/"),
        )
        .await
        .unwrap();
        assert_eq!(l.base_url, "https://emu.example");
    }
}
