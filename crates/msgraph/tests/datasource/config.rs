use std::time::Duration;

use kbsync_core::datasource::{Datasource, DatasourceKind};
use kbsync_msgraph::{DEFAULT_SCOPES, GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};

#[test]
fn graph_config_defaults_point_at_microsoft_graph_with_bounded_retries() {
    let c = GraphConfig::default();
    assert_eq!(c.graph_url, "https://graph.microsoft.com/v1.0");
    assert_eq!(c.request_timeout, Duration::from_secs(30));
    assert_eq!(c.max_attempts, 6);
    assert_eq!(c.max_retry_wait, Duration::from_secs(60));
    assert!(c.user_agent.starts_with("ISV|kbsync|kbsync/"), "{}", c.user_agent);
}

#[test]
fn graph_config_reads_partial_settings_with_durations_in_seconds() {
    let c: GraphConfig = serde_json::from_str(
        r#"{"graph_url":"http://127.0.0.1:1/v1.0","request_timeout":2.5,"page_size":50}"#,
    )
    .unwrap();
    assert_eq!(c.request_timeout, Duration::from_millis(2500));
    assert_eq!(c.page_size, 50);
    assert_eq!(c.max_attempts, GraphConfig::default().max_attempts);
    let back: GraphConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<GraphConfig>(r#"{"no_such_setting":1}"#).is_err());
}

#[test]
fn the_oauth_spec_is_derived_from_authority_and_tenant() {
    let spec = microsoft_oauth(
        "https://login.microsoftonline.com/",
        "common",
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
    );
    assert_eq!(
        spec.authorize_url,
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    );
    assert_eq!(
        spec.token_url,
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
    assert!(spec.scopes.contains(&"offline_access".to_string()));
    let config = GraphConfig::default();
    let http = config.http_client().unwrap();
    let ds = OneDrive::new(config, spec.clone(), http, std::sync::Arc::new(TokioSleeper));
    assert_eq!(ds.kind(), DatasourceKind::OneDrive);
    assert_eq!(ds.oauth(), &spec);
}
