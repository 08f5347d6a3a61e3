use crate::common::{reason, start, start_with};
use gdrive_emulator::{Emulator, FaultAction, FaultRule};

#[tokio::test]
async fn a_throttle_rule_answers_403_user_rate_limit_exceeded_in_the_usage_limits_domain_then_stops() {
    let env = start().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/drive/v3/files", FaultAction::user_rate_limit()).times(1));
    let (s, body) = env.json("files").await;
    assert_eq!((s, reason(&body)), (403, "userRateLimitExceeded"));
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(body["error"]["code"], 403);
    assert_eq!(env.json("files").await.0, 200, "count=1 fires once");
    let f = &env.ctl.faults()[0];
    assert_eq!((f.matched, f.fired), (1, 1));
    env.shutdown().await;
}

#[tokio::test]
async fn a_429_carries_retry_after_and_server_errors_use_the_status_given() {
    let env = start().await;
    env.ctl.add_fault(
        FaultRule::new("*", "/drive/v3/about", FaultAction::too_many_requests(Some(7))).every_nth(2),
    );
    env.ctl.add_fault(FaultRule::new(
        "*",
        "/drive/v3/changes/**",
        FaultAction::ServerError { status: 503 },
    ));
    assert_eq!(env.json("about?fields=user").await.0, 200);
    let r = env.get("about?fields=user").await;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reason(&body), "rateLimitExceeded");
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    let (s, body) = env.json("changes/startPageToken").await;
    assert_eq!((s, reason(&body)), (503, "backendError"));
    env.ctl.clear_faults();
    assert_eq!(env.json("changes/startPageToken").await.0, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn probability_faults_fire_in_the_same_places_for_the_same_seed() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let env = start_with(Emulator::builder().seed(42).auto_consent(true)).await;
        env.ctl
            .add_fault(FaultRule::new("GET", "/drive/v3/**", FaultAction::Unauthorized).probability(0.5));
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(env.json("about?fields=user").await.0);
        }
        env.shutdown().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&401) && runs[0].contains(&200), "{:?}", runs[0]);
}

#[tokio::test]
async fn faults_installed_over_http_are_logged_in_the_traffic() {
    let env = start().await;
    let r = env
        .http
        .post(format!("{}/faults", env.emu.control_url()))
        .json(&serde_json::json!({
            "method": "GET", "route": "/drive/v3/files/*", "trigger": {"type": "always"}, "count": 1,
            "action": {"type": "error", "status": 403, "reason": "downloadQuotaExceeded",
                       "message": "The download quota for this file has been exceeded."}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, body) = env.json("files/anything").await;
    assert_eq!((s, reason(&body)), (403, "downloadQuotaExceeded"));
    let log = env.ctl.traffic();
    assert_eq!(log.count("GET /drive/v3/files/{id}"), 1);
    assert_eq!(log.entries.last().unwrap().fault.as_deref(), Some("fault#1"));
    env.shutdown().await;
}
