//! Connecting a knowledge base through kbsync's real connection manager and the emulator's
//! authorize and token endpoints, as a browser that consents would.

use std::collections::HashMap;
use std::sync::Arc;

use kbsync_core::SeededRandom;
use kbsync_oauth::{CallbackError, ConnectionManager};
use kbsync_store::TokenCipher;

use crate::{Harness, Subject};

const SECRET_KEY: &str = "the secret key of the compliance suite";

/// kbsync's connection manager over the harness's store and clock, with the subject's OAuth
/// client as the only one configured; `instance` seeds its randomness (two managers on one
/// database are two instances and need different seeds).
pub fn manager<S: Subject>(h: &Harness<S>, instance: u64) -> ConnectionManager {
    ConnectionManager::new(
        h.store.clone(),
        reqwest::Client::builder().no_proxy().build().unwrap(),
        TokenCipher::new(SECRET_KEY, None).unwrap(),
        h.clock.clone(),
        Arc::new(SeededRandom::new(instance)),
        vec![h.subject.oauth_client()],
    )
}

/// Connects the harness's knowledge base: `initiate`, the browser at the authorize URL (the
/// emulator consents at once and redirects with a code), then the callback (`claim` with the
/// starting browser's binding, `complete`). Returns the authorize URL's parameters and what the
/// callback answered.
pub async fn connect<S: Subject>(
    h: &Harness<S>,
    manager: &ConnectionManager,
) -> (HashMap<String, String>, Result<kbsync_core::KbId, CallbackError>) {
    let started = manager.initiate(h.subject.kind(), h.kb, h.owner).await.unwrap();
    let query: HashMap<String, String> = url::Url::parse(&started.auth_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let resp = browser.get(&started.auth_url).send().await.unwrap();
    let status = resp.status();
    let Some(location) = resp.headers().get(reqwest::header::LOCATION).cloned() else {
        panic!(
            "the authorize endpoint did not redirect ({status}): {}",
            resp.text().await.unwrap()
        );
    };
    let location = location.to_str().unwrap().to_owned();
    let redirect_uri = &h.subject.oauth_client().redirect_uri;
    assert!(location.starts_with(redirect_uri.as_str()), "{location}");
    let back: HashMap<String, String> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(!back.contains_key("error"), "the consent was refused: {back:?}");
    assert_eq!(started.flow_id, kbsync_oauth::flow_id(&back["state"]));
    let pending = match manager.claim(&back["state"], Some(&started.binding)).await {
        Ok(p) => p,
        Err(e) => return (query, Err(e)),
    };
    (query, manager.complete(pending, &back["code"]).await)
}
