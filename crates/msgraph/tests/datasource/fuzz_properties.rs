//! Bounded fuzzing on stable of what kbsync reads from Graph before it trusts it: `Retry-After`
//! headers and delta pages. Arbitrary input gives a value or a refusal, never a panic.
//!
//! Every input goes through `kbsync_msgraph::fuzzing`, the entry points the cargo-fuzz targets
//! `retry_after` and `delta_page` (`fuzz/`, nightly) call: what CI runs is what the fuzzer runs.

use kbsync_msgraph::fuzzing::{DeltaOutcome, delta_page, permission, retry_after_header, retry_after_input};
use proptest::prelude::*;

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
        let _ = retry_after_header(value.as_bytes(), date.as_deref().map(str::as_bytes));
    }

    /// Exactly the `retry_after` fuzz target's input: raw bytes, a `Date` after a newline.
    #[test]
    fn any_bytes_as_retry_after_give_a_duration_or_none(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = retry_after_input(&bytes);
    }

    #[test]
    fn any_bytes_as_a_delta_page_are_refused_or_mapped(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = delta_page(&bytes);
    }

    #[test]
    fn delta_pages_of_odd_items_are_refused_or_mapped(
        items in proptest::collection::vec(item_json(), 0..20),
        next in proptest::option::of("\\PC{0,30}"),
    ) {
        let count = items.len();
        let mut page = serde_json::json!({ "value": items });
        if let Some(next) = next {
            page["@odata.nextLink"] = next.into();
        }
        let bytes = serde_json::to_vec(&page).unwrap();
        let outcome = delta_page(&bytes);
        if let DeltaOutcome::Mapped { items: n, .. } = outcome {
            prop_assert_eq!(n, count);
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
        let _ = permission(&serde_json::to_vec(&p).unwrap());
    }
}
