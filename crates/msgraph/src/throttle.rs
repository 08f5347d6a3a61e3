//! One throttle gate per tenant, shared by every request and every sync run of that tenant.
//!
//! Graph and SharePoint throttle per application per tenant, and Microsoft's scan guidance asks
//! clients that are told to wait to "pause all further requests … especially in multi-threaded
//! scenarios". So when any request gets a 429 or 503 with `Retry-After`, its tenant's gate closes
//! until now + `Retry-After` (or stays closed longer when another answer already said so), and
//! every request of that tenant waits at the gate before it sends: new requests, retries, and
//! requests that were already in flight when they come to send their next attempt. Without the
//! gate, each request would find out on its own, one 429 at a time, while it keeps using up the
//! tenant's budget ("throttled requests count towards usage limits").
//!
//! # Whose gate
//! A request's tenant is the `tid` claim of the access token it carries, together with the
//! application the token was issued to (`appid`, or `azp` in v2.0 tokens), since the budget is
//! per application per tenant. Entra's access tokens for work and school accounts are JWTs, the
//! app-only ones too, so the key is at hand for every request, whatever the token came from: a
//! stored connection, the organisation's application, or a token a browser supplied for one run.
//! (The connection record stores a tenant as well, but an app-only connection stores the
//! configured name, which may be a domain, while tokens always carry the id; and a browser's
//! token has no connection.) The claims are read without checking the signature: they only
//! decide which requests wait together, never what anyone may see.
//!
//! A token that is not such a JWT (personal Microsoft accounts get opaque ones) names no tenant;
//! those requests share one gate of their own per datasource instance. That may pause unrelated
//! personal accounts together for a `Retry-After`, which is the safe side of not knowing.
//!
//! A pre-authenticated download URL carries no token: its request waits at the gate of the
//! request that handed the URL out (SharePoint serves and throttles both).
//!
//! The gates live in the datasource instance: the process builds one OneDrive datasource and all
//! knowledge bases and runs share it. Several kbsync instances do not share gates; each learns
//! of a tenant's throttling from its own answers.
//!
//! The gate itself (closing it, waiting at it with jitter, the per-request budget) is
//! [`kbsync_core::retry::Gate`], shared with the other datasource clients; this module decides
//! which requests share one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::AccessToken;
pub use kbsync_core::retry::{Closure, Gate};

/// Gates kept before forgetting open gates that no request is using.
const KEEP_GATES: usize = 1024;

/// The gates of one datasource instance, by tenant.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    by_tenant: Mutex<HashMap<String, Arc<Gate>>>,
    unknown: Arc<Gate>,
}

impl Gates {
    /// The gate of the tenant `token` belongs to; the shared gate of unknown tenants when the
    /// token names none.
    pub(crate) fn for_token(&self, token: Option<&AccessToken>, now: DateTime<Utc>) -> Arc<Gate> {
        match token.and_then(|t| tenant_key(t.secret())) {
            Some(key) => self.for_tenant(key, now),
            None => self.unknown.clone(),
        }
    }

    fn for_tenant(&self, key: String, now: DateTime<Utc>) -> Arc<Gate> {
        let mut gates = self.by_tenant.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.get(&key) {
            return gate.clone();
        }
        if gates.len() >= KEEP_GATES {
            // An open gate that no request holds carries nothing worth keeping.
            gates.retain(|_, g| Arc::strong_count(g) > 1 || g.closed_at(now).is_some());
        }
        gates.entry(key).or_default().clone()
    }
}

/// `{tid}` or `{tid}/{application id}` from a JWT access token, when it is one and carries `tid`.
pub(crate) fn tenant_key(access_token: &str) -> Option<String> {
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let claim = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty() && v.len() <= 128)
    };
    let tid = claim("tid")?.to_ascii_lowercase();
    Some(match claim("appid").or_else(|| claim("azp")) {
        Some(app) => format!("{tid}/{}", app.to_ascii_lowercase()),
        None => tid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b64(br#"{"typ":"JWT","alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_tenant_key_is_tid_and_application_of_a_jwt_and_nothing_for_opaque_tokens() {
        assert_eq!(
            tenant_key(&jwt(serde_json::json!({"tid": "T-1", "appid": "App"}))).as_deref(),
            Some("t-1/app")
        );
        assert_eq!(
            tenant_key(&jwt(serde_json::json!({"tid": "t-1", "azp": "app2"}))).as_deref(),
            Some("t-1/app2")
        );
        assert_eq!(
            tenant_key(&jwt(serde_json::json!({"tid": "t-1"}))).as_deref(),
            Some("t-1")
        );
        assert_eq!(tenant_key(&jwt(serde_json::json!({"appid": "app"}))), None);
        assert_eq!(tenant_key("EwBwA8l6BAAUopaque"), None);
        assert_eq!(tenant_key("a.%%%.c"), None);
        assert_eq!(tenant_key(""), None);
    }

    #[test]
    fn tokens_of_one_tenant_share_a_gate_and_other_tenants_and_unknown_ones_do_not() {
        let gates = Gates::default();
        let a1 = AccessToken::new(jwt(serde_json::json!({"tid": "a", "appid": "x", "uti": "1"})));
        let a2 = AccessToken::new(jwt(serde_json::json!({"tid": "a", "appid": "x", "uti": "2"})));
        let b = AccessToken::new(jwt(serde_json::json!({"tid": "b", "appid": "x"})));
        let opaque = AccessToken::new("opaque");
        let now = at(0);
        assert!(Arc::ptr_eq(
            &gates.for_token(Some(&a1), now),
            &gates.for_token(Some(&a2), now)
        ));
        assert!(!Arc::ptr_eq(
            &gates.for_token(Some(&a1), now),
            &gates.for_token(Some(&b), now)
        ));
        assert!(!Arc::ptr_eq(
            &gates.for_token(Some(&a1), now),
            &gates.for_token(Some(&opaque), now)
        ));
        assert!(Arc::ptr_eq(
            &gates.for_token(Some(&opaque), now),
            &gates.for_token(Some(&AccessToken::new("other-opaque")), now)
        ));
    }

    #[test]
    fn open_gates_nobody_holds_are_forgotten_once_many_tenants_were_seen() {
        let gates = Gates::default();
        let now = at(0);
        let held = gates.for_tenant("held".into(), now);
        gates.for_tenant("closed".into(), now).close_until(at(60));
        for i in 0..KEEP_GATES {
            gates.for_tenant(format!("t{i}"), now);
        }
        let kept = gates.by_tenant.lock().unwrap();
        assert!(kept.contains_key("held") && kept.contains_key("closed"));
        assert!(kept.len() < KEEP_GATES, "{}", kept.len());
        drop(kept);
        assert!(Arc::ptr_eq(&held, &gates.for_tenant("held".into(), now)));
    }
}
