use crate::common::*;
use msgraph_emulator::{FaultAction, FaultRule, ResyncCode, RetryAfter};
use serde_json::Value;

fn throttle(status: u16, retry_after: RetryAfter) -> FaultAction {
    FaultAction::Throttle {
        status,
        retry_after,
        rate_limit_headers: false,
    }
}

#[tokio::test]
async fn fault_429_with_retry_after_seconds() {
    let env = env().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/me", throttle(429, RetryAfter::Seconds(7))).times(1));
    let r = env.get("/me").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["innerError"]["code"], "throttledRequest");
    assert_eq!(env.get("/me").await.status(), 200, "count 1: fires once");
    env.shutdown().await;
}

#[tokio::test]
async fn fault_503_with_retry_after_as_http_date() {
    let env = env().await;
    env.ctl.add_fault(FaultRule::new(
        "*",
        "/v1.0/**",
        throttle(503, RetryAfter::HttpDate(120)),
    ));
    let r = env.get("/me/drive").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "Sat, 01 Mar 2025 09:02:00 GMT");
    env.shutdown().await;
}

#[tokio::test]
async fn throttling_can_carry_ratelimit_headers() {
    let env = env().await;
    env.ctl.add_fault(FaultRule::new(
        "*",
        "/v1.0/**",
        FaultAction::Throttle {
            status: 429,
            retry_after: RetryAfter::Seconds(31),
            rate_limit_headers: true,
        },
    ));
    let r = env.get("/me").await;
    assert_eq!(r.headers()["ratelimit-limit"], "1200");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_eq!(r.headers()["ratelimit-reset"], "31");
    env.shutdown().await;
}

#[tokio::test]
async fn fault_fires_on_every_nth_matching_request() {
    let env = env().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/me", FaultAction::ServerError { status: 500 }).every_nth(3));
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(env.get("/me").await.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 500, 200, 200, 500, 200]);
    env.shutdown().await;
}

#[tokio::test]
async fn fault_after_the_first_n_fires_on_every_later_matching_request() {
    let env = env().await;
    env.ctl.add_fault(
        FaultRule::new("GET", "/v1.0/me", FaultAction::ServerError { status: 503 }).after_first(2),
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(env.get("/me").await.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 503, 503, 503]);
    env.shutdown().await;
}

#[tokio::test]
async fn fault_with_probability_is_seeded_and_deterministic() {
    async fn pattern() -> Vec<u16> {
        let env = env().await;
        env.ctl.add_fault(
            FaultRule::new("GET", "/v1.0/me", FaultAction::ServerError { status: 500 }).probability(0.5),
        );
        let mut s = Vec::new();
        for _ in 0..30 {
            s.push(env.get("/me").await.status().as_u16());
        }
        env.shutdown().await;
        s
    }
    let a = pattern().await;
    assert_eq!(a, pattern().await);
    assert!(a.contains(&500) && a.contains(&200));
}

#[tokio::test]
async fn fault_count_limits_how_often_it_fires() {
    let env = env().await;
    let id = env
        .ctl
        .add_fault(FaultRule::new("GET", "/v1.0/me", FaultAction::ServerError { status: 502 }).times(2));
    let s: Vec<u16> = futures_statuses(&env, 4).await;
    assert_eq!(s, vec![502, 502, 200, 200]);
    let f = env.ctl.faults().into_iter().find(|f| f.id == id).unwrap();
    assert_eq!(f.fired, 2);
    env.shutdown().await;
}

async fn futures_statuses(env: &Env, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(env.get("/me").await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn fault_answers_500_with_graph_error_body() {
    let env = env().await;
    env.ctl.add_fault(FaultRule::new(
        "GET",
        "/v1.0/me",
        FaultAction::ServerError { status: 500 },
    ));
    let r = env.get("/me").await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "generalException");
    env.shutdown().await;
}

#[tokio::test]
async fn fault_drops_the_connection() {
    let env = env().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/me", FaultAction::DropConnection).times(1));
    let err = env
        .http
        .get(env.url("/me"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert_eq!(env.get("/me").await.status(), 200);
    env.shutdown().await;
}

#[tokio::test]
async fn fault_truncates_the_body() {
    let env = env().await;
    let f = env
        .ctl
        .put_file(&env.drive, "/big.bin", vec![7u8; 100_000])
        .unwrap();
    env.ctl
        .add_fault(FaultRule::new("GET", "/_download/*", FaultAction::TruncateBody).times(1));
    let item = env
        .get_json(&format!("/drives/{}/items/{}", env.drive, f.id))
        .await;
    let url = item["@microsoft.graph.downloadUrl"].as_str().unwrap();
    let r = env.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(100_000));
    assert!(r.bytes().await.is_err(), "the body ends early");
    // A fresh connection (the truncated one is gone; a pooled client may need one retry to notice).
    let ok = client().get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(ok.len(), 100_000);
    env.shutdown().await;
}

#[tokio::test]
async fn fault_answers_401_invalid_authentication_token() {
    let env = env().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/drives/**", FaultAction::Unauthorized).times(1));
    let r = env.get(&format!("/drives/{}/root", env.drive)).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    env.shutdown().await;
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "asserts the injected delay in real time"
)]
async fn fault_delays_the_answer() {
    let env = env().await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/me", FaultAction::Delay { millis: 300 }).times(1));
    let t = std::time::Instant::now();
    assert_eq!(env.get("/me").await.status(), 200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    env.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_beyond_requests_per_second() {
    let env = env().await;
    env.ctl.set_rate_limit(Some(3));
    let s = futures_statuses(&env, 5).await;
    assert_eq!(s, vec![200, 200, 200, 429, 429]);
    let r = env.get("/me").await;
    assert_eq!(r.headers()["retry-after"], "1");
    env.ctl.advance_clock(chrono::Duration::seconds(1));
    assert_eq!(env.get("/me").await.status(), 200, "a new second, a new budget");
    env.ctl.set_rate_limit(None);
    assert_eq!(futures_statuses(&env, 5).await, vec![200; 5]);
    env.shutdown().await;
}

#[tokio::test]
async fn request_log_records_routes_counts_status_and_authorization() {
    let env = env().await;
    env.get("/me").await;
    env.get("/me").await;
    env.get(&format!("/drives/{}/root/delta", env.drive)).await;
    env.http.get(env.url("/me")).send().await.unwrap();
    let log = env.ctl.request_log();
    assert_eq!(log.count("GET /v1.0/me"), 3);
    assert_eq!(log.count("GET /v1.0/drives/{id}/root/delta"), 1);
    let unauth = log.entries.iter().find(|e| e.status == 401).unwrap();
    assert!(!unauth.had_authorization);
    assert!(
        log.entries
            .iter()
            .filter(|e| e.status == 200)
            .all(|e| e.had_authorization)
    );
    env.ctl.clear_request_log();
    assert!(env.ctl.request_log().entries.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn resource_units_are_counted_1_2_5() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    env.get(&format!("/drives/{}/items/{}", env.drive, f.id)).await; // 1
    env.get(&format!("/drives/{}/root/children", env.drive)).await; // 2
    let (_, _, link) = env
        .delta_round(&format!("/drives/{}/root/delta", env.drive))
        .await; // 2
    env.get(&link).await; // 1
    env.get(&format!("/drives/{}/items/{}/permissions", env.drive, f.id))
        .await; // 5
    let r = env
        .get(&format!("/drives/{}/items/{}/content", env.drive, f.id))
        .await; // 1
    env.http
        .get(r.headers()["location"].to_str().unwrap())
        .send()
        .await
        .unwrap(); // 1
    let log = env.ctl.request_log();
    let units: Vec<u32> = log.entries.iter().map(|e| e.resource_units).collect();
    assert_eq!(units, vec![1, 2, 2, 1, 5, 1, 1]);
    assert_eq!(log.resource_units, 13);
    env.shutdown().await;
}

#[tokio::test]
async fn request_log_records_the_user_agent_of_each_request() {
    let env = env().await;
    let ua = "ISV|kbsync|kbsync/0.1.0";
    env.http
        .get(env.url("/me"))
        .bearer_auth(&env.token)
        .header("user-agent", ua)
        .send()
        .await
        .unwrap();
    env.get("/me").await;
    let log = env.ctl.request_log();
    assert_eq!(log.entries[0].user_agent.as_deref(), Some(ua));
    assert!(log.entries[0].had_authorization);
    assert_eq!(log.entries[1].user_agent, None, "no User-Agent sent");
    // The control API's log JSON carries it too.
    let json: serde_json::Value = env
        .http
        .get(format!("{}/requests", env.emu.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["entries"][0]["user_agent"], ua);
    assert_eq!(json["entries"][0]["had_authorization"], true);
    assert!(json["entries"][1]["user_agent"].is_null());
    env.shutdown().await;
}

#[tokio::test]
async fn resync_fault_answers_a_delta_token_with_410_resync_required_and_a_fresh_location() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/a.txt", "a").unwrap();
    env.ctl.put_file(&env.drive, "/b.txt", "b").unwrap();
    let folder_delta = format!("/drives/{}/root/delta", env.drive);
    env.ctl.add_fault(FaultRule::new(
        "GET",
        "/v1.0/drives/**",
        FaultAction::ResyncRequired {
            code: ResyncCode::ResyncChangesUploadDifferences,
        },
    ));
    // A token-less delta, an item read and a listing are never answered 410: Graph sends it only for a token.
    let first = env.get(&format!("{folder_delta}?$top=1")).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let item = &first["value"][0]["id"];
    assert_eq!(
        env.get(&format!("/drives/{}/items/{}", env.drive, item.as_str().unwrap()))
            .await
            .status(),
        200
    );
    assert_eq!(
        env.get(&format!("/drives/{}/root/children", env.drive))
            .await
            .status(),
        200
    );
    // The nextLink (a page token) is.
    let next = first["@odata.nextLink"].as_str().unwrap();
    let r = env.get(next).await;
    assert_eq!(r.status(), 410);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}{folder_delta}", env.emu.graph_url()));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resyncRequired");
    assert_eq!(
        body["error"]["innerError"]["code"],
        "resyncChangesUploadDifferences"
    );
    let fault = &env.ctl.faults()[0];
    assert_eq!(
        (fault.matched, fault.fired),
        (1, 1),
        "only the token request matched"
    );
    // With the fault gone, Location starts a full enumeration, and a deltaLink is answered 410 once the fault
    // is back, also in its `delta(token='…')` form.
    env.ctl.clear_faults();
    let (items, _, link) = env.delta_round(&location).await;
    assert!(names(&items).contains(&"b.txt".to_owned()));
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            "/v1.0/**",
            FaultAction::ResyncRequired {
                code: ResyncCode::ResyncChangesApplyDifferences,
            },
        )
        .times(2),
    );
    let r = env.get(&link).await;
    assert_eq!(r.status(), 410);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["innerError"]["code"],
        "resyncChangesApplyDifferences"
    );
    let token = link.split("token=").nth(1).unwrap();
    let r = env.get(&format!("{folder_delta}(token='{token}')")).await;
    assert_eq!(r.status(), 410);
    assert_eq!(r.headers()["location"].to_str().unwrap(), location);
    env.ctl.clear_faults();
    assert_eq!(
        env.get(&link).await.status(),
        200,
        "the token itself is still good"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn resync_fault_rule_reads_from_the_control_api_json() {
    let env = env().await;
    let resp = env
        .http
        .post(format!("{}/faults", env.emu.control_url()))
        .json(&serde_json::json!({
            "route": "/v1.0/drives/**",
            "trigger": {"type": "probability", "p": 0.1},
            "action": {"type": "resync_required"}
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let rule = &env.ctl.faults()[0].rule;
    assert_eq!(
        rule.action,
        FaultAction::ResyncRequired {
            code: ResyncCode::ResyncChangesApplyDifferences
        }
    );
    assert_eq!(
        rule.trigger,
        msgraph_emulator::FaultTrigger::Probability { p: 0.1 }
    );
    env.shutdown().await;
}
