//! One throttle gate per tenant: a 429/503 with `Retry-After` to any request pauses every
//! request of that tenant (other calls, other runs' tokens, retries of requests in flight, and
//! downloads), and no other tenant's.
//!
//! The datasource's clock is a `ManualClock` that only the tests move. The concurrency tests use
//! a sleeper that holds every wait until the test lets go, so a request that is "waiting at the
//! gate" can be seen to have sent nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kbsync_core::datasource::{Datasource, DatasourceError, RemoteItem};
use kbsync_core::{ManualClock, SeededRandom};
use kbsync_msgraph::{GraphConfig, OneDrive, Sleeper};
use msgraph_emulator::{Control, DriveType, FaultAction, FaultRule, NewUser, RetryAfter, RunningEmulator};
use tokio::sync::watch;

use crate::common::*;

/// Another organisation's tenant (a user of it gets tokens with this `tid`).
const FABRIKAM: &str = "5d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";

fn throttle(status: u16, secs: u64) -> FaultAction {
    FaultAction::Throttle {
        status,
        retry_after: RetryAfter::Seconds(secs),
        rate_limit_headers: false,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Records every wait and holds it until [`HeldSleeper::release`]; after that, waits return at once.
#[derive(Debug)]
struct HeldSleeper {
    waits: Mutex<Vec<Duration>>,
    released: watch::Sender<bool>,
}

impl HeldSleeper {
    fn new() -> Self {
        Self {
            waits: Mutex::default(),
            released: watch::channel(false).0,
        }
    }

    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }

    fn release(&self) {
        self.released.send_replace(true);
    }

    /// Returns once `n` waits have begun (fails the test after 10 s).
    async fn until_waiting(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.waits.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} waits never began: {:?}", self.waits()));
    }
}

#[async_trait]
impl Sleeper for HeldSleeper {
    async fn sleep(&self, d: Duration) {
        self.waits.lock().unwrap().push(d);
        let mut released = self.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
}

/// Records every wait and moves the clock on by it, as a real wait would.
#[derive(Debug)]
struct ClockSleeper {
    waits: Mutex<Vec<Duration>>,
    clock: ManualClock,
}

#[async_trait]
impl Sleeper for ClockSleeper {
    async fn sleep(&self, d: Duration) {
        self.waits.lock().unwrap().push(d);
        self.clock.advance(chrono::Duration::from_std(d).unwrap());
    }
}

struct Gated<S> {
    emu: RunningEmulator,
    ctl: Control,
    ds: OneDrive,
    sleeper: Arc<S>,
    clock: ManualClock,
    drive: String,
    user: String,
}

async fn gated_with<S: Sleeper + 'static>(
    tweak: impl FnOnce(&mut GraphConfig),
    sleeper: impl FnOnce(&ManualClock) -> S,
) -> Gated<S> {
    let emu = builder().start().await.unwrap();
    let ctl = emu.control();
    let mut config = kbsync_kit::emulator::graph_config(&emu);
    tweak(&mut config);
    let clock = ManualClock::new(ctl.now());
    let sleeper = Arc::new(sleeper(&clock));
    let ds = kbsync_kit::emulator::onedrive(&emu, config, sleeper.clone())
        .with_random(Arc::new(SeededRandom::new(3)))
        .with_clock(Arc::new(clock.clone()));
    let user = ctl.default_user_id();
    let drive = ctl.default_drive_id();
    Gated {
        emu,
        ctl,
        ds,
        sleeper,
        clock,
        drive,
        user,
    }
}

async fn gated() -> Gated<HeldSleeper> {
    gated_with(|_| {}, |_| HeldSleeper::new()).await
}

impl<S> Gated<S> {
    /// Tokens of the default user; each call gives another token of the same tenant, as another
    /// connection or run of that tenant would hold.
    fn tokens(&self) -> TestTokens {
        TestTokens::new(&self.ctl, &self.user)
    }

    fn file(&self, path: &str) -> String {
        self.ctl
            .put_file(&self.drive, path, path.as_bytes().to_vec())
            .unwrap()
            .id
    }

    /// The statuses of the requests for item `id` itself (not its content), in order.
    fn item_requests(&self, id: &str) -> Vec<u16> {
        let suffix = format!("/items/{id}");
        self.ctl
            .request_log()
            .entries
            .iter()
            .filter(|e| e.path.ends_with(&suffix))
            .map(|e| e.status)
            .collect()
    }

    fn throttle_item(&self, id: &str, action: FaultAction) {
        self.ctl
            .add_fault(FaultRule::new("GET", &format!("/v1.0/drives/*/items/{id}"), action).times(1));
    }

    async fn shutdown(self) {
        self.emu.shutdown().await;
    }
}

/// Whether `wait` is the full `Retry-After` plus the documented jitter (< 5 %, < 250 ms).
fn is_retry_after_plus_jitter(wait: Duration, retry_after: Duration) -> bool {
    let bound = (retry_after / 20).min(Duration::from_millis(250));
    wait >= retry_after && wait < retry_after + bound
}

#[tokio::test]
async fn a_429_pauses_the_other_requests_of_the_tenant_until_its_retry_after() {
    let env = gated().await;
    let (a, b) = (env.file("/a.txt"), env.file("/b.txt"));
    env.throttle_item(&a, throttle(429, 5));
    // Two runs of one tenant, each with its own token.
    let (run1, run2) = (env.tokens(), env.tokens());

    let (ra, rb, ()) = tokio::join!(
        env.ds.item(&run1, &env.drive, &a),
        async {
            env.sleeper.until_waiting(1).await;
            env.ds.item(&run2, &env.drive, &b).await
        },
        async {
            env.sleeper.until_waiting(2).await;
            assert_eq!(
                env.item_requests(&b),
                Vec::<u16>::new(),
                "b waits at the gate before sending"
            );
            env.sleeper.release();
        },
    );

    assert_eq!(ra.unwrap().id, a);
    assert_eq!(rb.unwrap().id, b);
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(
        waits.iter().all(|w| is_retry_after_plus_jitter(*w, secs(5.0))),
        "both wait the whole Retry-After: {waits:?}"
    );
    assert_eq!(env.item_requests(&a), vec![429, 200]);
    assert_eq!(
        env.item_requests(&b),
        vec![200],
        "b never collected a 429 of its own"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_429_of_one_tenant_does_not_pause_another_tenant() {
    let env = gated().await;
    let a = env.file("/a.txt");
    let other = env
        .ctl
        .create_user(NewUser {
            display_name: "Fabrikam colleague".into(),
            mail: None,
            user_principal_name: None,
            drive_type: Some(DriveType::Business),
            tenant_id: Some(FABRIKAM.into()),
        })
        .unwrap();
    let other_drive = other.drive_id.clone().unwrap();
    let f = env.ctl.put_file(&other_drive, "/f.txt", "f").unwrap().id;
    let other_tokens = TestTokens::new(&env.ctl, &other.id);
    env.throttle_item(&a, throttle(429, 5));
    let tokens = env.tokens();

    let (ra, rf) = tokio::join!(env.ds.item(&tokens, &env.drive, &a), async {
        env.sleeper.until_waiting(1).await;
        // While this tenant's gate is closed (and its wait held), the other tenant goes ahead.
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            env.ds.item(&other_tokens, &other_drive, &f),
        )
        .await
        .expect("the other tenant's request waited at this tenant's gate");
        assert_eq!(env.sleeper.waits().len(), 1, "the other tenant did not wait");
        env.sleeper.release();
        r
    });

    assert_eq!(ra.unwrap().id, a);
    assert_eq!(rf.unwrap().id, f);
    assert_eq!(env.item_requests(&f), vec![200]);
    env.shutdown().await;
}

#[tokio::test]
async fn a_request_in_flight_waits_at_the_closed_gate_before_its_next_attempt() {
    let env = gated().await;
    let (a, b) = (env.file("/a.txt"), env.file("/b.txt"));
    env.throttle_item(&b, FaultAction::ServerError { status: 500 });
    env.throttle_item(&a, throttle(503, 5));
    let (run1, run2) = (env.tokens(), env.tokens());

    let (rb, ra, ()) = tokio::join!(
        // b fails once and backs off on its own (wait 1) …
        env.ds.item(&run2, &env.drive, &b),
        // … meanwhile a's 503 closes the gate (wait 2) …
        async {
            env.sleeper.until_waiting(1).await;
            env.ds.item(&run1, &env.drive, &a).await
        },
        async {
            env.sleeper.until_waiting(2).await;
            env.sleeper.release();
        },
    );

    assert_eq!(ra.unwrap().id, a);
    assert_eq!(rb.unwrap().id, b);
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 3, "{waits:?}");
    assert!(waits[0] < secs(1.0), "b's backoff: {waits:?}");
    // … so b, back from its backoff, waits out the closure before its second attempt (wait 3).
    assert!(is_retry_after_plus_jitter(waits[1], secs(5.0)), "{waits:?}");
    assert!(is_retry_after_plus_jitter(waits[2], secs(5.0)), "{waits:?}");
    assert_eq!(env.item_requests(&b), vec![500, 200]);
    env.shutdown().await;
}

#[tokio::test]
async fn a_throttled_download_host_pauses_the_tenants_graph_requests() {
    let env = gated().await;
    let (d, b) = (env.file("/d.txt"), env.file("/b.txt"));
    let tokens = env.tokens();
    let item: RemoteItem = env.ds.item(&tokens, &env.drive, &d).await.unwrap();
    env.ctl
        .add_fault(FaultRule::new("GET", "/_download/**", throttle(503, 4)).times(1));

    let (download, rb, ()) = tokio::join!(
        async { drain(env.ds.download(&tokens, &item).await.unwrap()).await },
        async {
            env.sleeper.until_waiting(1).await;
            env.ds.item(&env.tokens(), &env.drive, &b).await
        },
        async {
            env.sleeper.until_waiting(2).await;
            assert_eq!(env.item_requests(&b), Vec::<u16>::new(), "b waits at the gate");
            env.sleeper.release();
        },
    );

    assert_eq!(download.0, b"/d.txt");
    assert_eq!(download.1, None);
    assert_eq!(rb.unwrap().id, b);
    let waits = env.sleeper.waits();
    assert!(
        waits.iter().all(|w| is_retry_after_plus_jitter(*w, secs(4.0))),
        "{waits:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_jitter_on_a_retry_after_stays_below_5_percent_of_it_and_below_250_ms() {
    let env = gated_with(
        |_| {},
        |clock| ClockSleeper {
            waits: Mutex::default(),
            clock: clock.clone(),
        },
    )
    .await;
    let a = env.file("/a.txt");
    let tokens = env.tokens();
    let retry_afters = [1, 2, 10, 60];
    for s in retry_afters {
        for _ in 0..10 {
            env.throttle_item(&a, throttle(429, s));
            env.ds.item(&tokens, &env.drive, &a).await.unwrap();
        }
    }

    let waits = env.sleeper.waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 40, "one wait per throttled answer: {waits:?}");
    for (chunk, s) in waits.chunks(10).zip(retry_afters) {
        let retry_after = secs(s as f64);
        assert!(
            chunk.iter().all(|w| is_retry_after_plus_jitter(*w, retry_after)),
            "Retry-After {s}: {chunk:?}"
        );
        assert!(
            chunk.iter().any(|w| *w > retry_after),
            "some jitter spreads the waiters: {chunk:?}"
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_throttled_at_once_for_every_request_of_the_tenant_until_it_passes() {
    let env = gated().await;
    let (a, b) = (env.file("/a.txt"), env.file("/b.txt"));
    env.throttle_item(&a, throttle(429, 120));
    let (run1, run2) = (env.tokens(), env.tokens());

    let ra = env.ds.item(&run1, &env.drive, &a).await;
    let rb = env.ds.item(&run2, &env.drive, &b).await;

    let throttled = Err(DatasourceError::Throttled {
        retry_after: secs(120.0),
    });
    assert_eq!(ra, throttled);
    assert_eq!(rb, throttled, "b learns of the closed gate without asking Graph");
    assert!(env.sleeper.waits().is_empty());
    assert_eq!(env.item_requests(&a), vec![429]);
    assert_eq!(env.item_requests(&b), Vec::<u16>::new());

    env.clock.advance(chrono::Duration::seconds(120));
    assert_eq!(env.ds.item(&run2, &env.drive, &b).await.unwrap().id, b);
    assert!(env.sleeper.waits().is_empty());
    env.shutdown().await;
}
