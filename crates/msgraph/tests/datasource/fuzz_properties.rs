//! Bounded fuzzing on stable of what kbsync reads from Graph before it trusts it: `Retry-After`
//! headers and delta pages. Arbitrary input gives a value or a refusal, never a panic.

use chrono::{DateTime, Utc};
use kbsync_msgraph::errors::retry_after;
use kbsync_msgraph::mapping::{browse_entry, remote_item, remote_permission, sharing_changed};
use kbsync_msgraph::model::{DriveItem, Page, Permission};
use proptest::prelude::*;
use reqwest::header::{DATE, HeaderMap, HeaderValue, RETRY_AFTER};

fn now() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

/// Strings near what a server sends: numbers, decimals, dates in several shapes, and junk.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{0,6}\\.[0-9]{0,6}",
        "[0-9.eE+-]{0,12}",
        "(Mon|Sun|Xyz), [0-9]{1,2} (Jan|Feb|Dec|Foo) [0-9]{1,5} [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} GMT",
        "\\PC{0,40}",
    ]
}

/// JSON values built from the shapes of a delta page's items, with fields missing, wrongly typed
/// or strange.
fn item_json() -> impl Strategy<Value = serde_json::Value> {
    let text = prop_oneof![
        Just(String::new()),
        "\\PC{0,12}",
        Just("/drive/root:".to_string())
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        text.clone().prop_map(serde_json::Value::from),
    ];
    (
        text.clone(),
        text.clone(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(text.clone()),
        proptest::option::of(text),
        leaf,
        any::<u8>(),
    )
        .prop_map(|(id, name, size, parent_path, hash, odd, facets)| {
            let mut item = serde_json::json!({ "id": id, "name": name });
            let o = item.as_object_mut().unwrap();
            if let Some(size) = size {
                o.insert("size".into(), size.into());
            }
            if facets & 1 != 0 {
                o.insert(
                    "parentReference".into(),
                    serde_json::json!({ "driveId": "d", "id": "p", "path": parent_path }),
                );
            }
            if facets & 2 != 0 {
                o.insert(
                    "file".into(),
                    serde_json::json!({ "mimeType": "text/plain", "hashes": { "quickXorHash": hash } }),
                );
            }
            if facets & 4 != 0 {
                o.insert("folder".into(), serde_json::json!({ "childCount": odd }));
            }
            if facets & 8 != 0 {
                o.insert("deleted".into(), serde_json::json!({ "state": "deleted" }));
            }
            if facets & 16 != 0 {
                o.insert(
                    "remoteItem".into(),
                    serde_json::json!({ "id": "r", "parentReference": { "driveId": odd } }),
                );
            }
            if facets & 32 != 0 {
                o.insert("root".into(), serde_json::json!({}));
            }
            if facets & 64 != 0 {
                o.insert("lastModifiedDateTime".into(), odd);
            }
            item
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_retry_after_gives_a_duration_or_none(value in header_text(), date in proptest::option::of(header_text())) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(RETRY_AFTER, v);
        }
        if let Some(Ok(d)) = date.map(|d| HeaderValue::from_str(&d)) {
            headers.insert(DATE, d);
        }
        let _ = retry_after(&headers, now());
    }

    #[test]
    fn any_bytes_as_a_delta_page_are_refused_or_mapped(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(page) = serde_json::from_slice::<Page<DriveItem>>(&bytes) {
            for item in &page.value {
                let _ = remote_item(item, "drive", None);
                let _ = browse_entry(item, Some("drive"));
                let _ = sharing_changed(item);
            }
        }
    }

    #[test]
    fn delta_pages_of_odd_items_are_refused_or_mapped(
        items in proptest::collection::vec(item_json(), 0..20),
        next in proptest::option::of("\\PC{0,30}"),
    ) {
        let mut page = serde_json::json!({ "value": items });
        if let Some(next) = next {
            page["@odata.nextLink"] = next.into();
        }
        let bytes = serde_json::to_vec(&page).unwrap();
        if let Ok(page) = serde_json::from_slice::<Page<DriveItem>>(&bytes) {
            for item in &page.value {
                let _ = remote_item(item, "drive", Some("scope"));
                let _ = browse_entry(item, None);
            }
        }
    }

    #[test]
    fn odd_permissions_are_refused_or_mapped(
        roles in proptest::collection::vec("\\PC{0,8}", 0..4),
        link in proptest::option::of(("\\PC{0,10}", "\\PC{0,10}")),
        granted in proptest::option::of("\\PC{0,10}"),
    ) {
        let mut p = serde_json::json!({ "id": "perm", "roles": roles });
        if let Some((kind, scope)) = link {
            p["link"] = serde_json::json!({ "type": kind, "scope": scope });
        }
        if let Some(who) = granted {
            p["grantedToV2"] = serde_json::json!({ "user": { "id": who, "email": who } });
        }
        if let Ok(p) = serde_json::from_value::<Permission>(p) {
            let _ = remote_permission(&p, "drive");
        }
    }
}
