//! Quarantine: a file on which the text extractor times out twice at the same content is not
//! downloaded again until it changes at the source (docs/reliability.md, "Quarantine").

use kbsync_core::DocumentStatus;

use super::*;

kbsync_kit::on_both_databases!(
    a_file_that_times_out_the_extractor_twice_is_quarantined_not_downloaded_again_and_retried_once_changed,
);

/// An XML file that is cheap to store and slow to parse: millions of empty elements and no text.
fn slow_xml() -> String {
    format!("<r>{}</r>", "<a/>".repeat(8_000_000))
}

async fn a_file_that_times_out_the_extractor_twice_is_quarantined_not_downloaded_again_and_retried_once_changed(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    let limits = SyncLimits {
        max_file_size: 64 * 1024 * 1024,
        file_timeout: Duration::from_secs(120),
        ..limits()
    };
    // The extractor's own limit: what a strike is. Far below the parse time of the slow file,
    // far above that of a small one.
    let engine = env.engine_with_ingest(
        limits,
        IngestConfig {
            per_file_timeout: Duration::from_millis(400),
            ..IngestConfig::default()
        },
    );
    env.put("/P/good.txt", "good grape");
    let bomb = env.put("/P/bomb.xml", &slow_xml());
    env.add_folder("/P").await;
    let bomb_downloads = || env.count(&format!("/v1.0/drives/*/items/{bomb}/content"));

    // First strike: an ordinary failure, retried by the next run.
    let first = env.sync_on(&engine).await;
    assert_eq!(first.status, SyncStatus::CompletedWithErrors, "{first:?}");
    assert_eq!((first.processed, first.failed, first.quarantined), (1, 1, 0));
    assert_eq!(first.failures[0].item_id, bomb);
    assert!(
        first.failures[0].reason.contains("took longer than the limit"),
        "{:?}",
        first.failures
    );
    let doc = env
        .store
        .document_by_source_item(env.kb, &bomb)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(bomb_downloads(), 1);

    // Second strike on the same content: quarantined.
    let second = env.sync_on(&engine).await;
    assert_eq!(second.status, SyncStatus::CompletedWithErrors, "{second:?}");
    assert_eq!((second.processed, second.failed, second.quarantined), (0, 0, 1));
    assert_eq!(bomb_downloads(), 2);
    assert_eq!(second.failures.len(), 1);
    assert_eq!(second.failures[0].item_id, bomb);
    let reason = second.failures[0].reason.clone();
    assert!(reason.starts_with("quarantined: "), "{reason}");
    assert!(reason.contains("took longer than the limit"), "{reason}");
    assert!(reason.contains("retried when the file changes"), "{reason}");
    let doc = env
        .store
        .document_by_source_item(env.kb, &bomb)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.status, DocumentStatus::Quarantined);
    assert_eq!(doc.error.as_deref(), Some(reason.as_str()));

    // Unchanged: not downloaded (nor extracted) again, and every run says why.
    env.ctl.clear_request_log();
    let third = env.sync_on(&engine).await;
    assert_eq!(
        env.content_requests(),
        0,
        "a quarantined file was downloaded again"
    );
    assert_eq!(third.status, SyncStatus::CompletedWithErrors, "{third:?}");
    assert_eq!((third.processed, third.failed, third.quarantined), (0, 0, 1));
    assert_eq!(third.failures.len(), 1);
    assert_eq!(third.failures[0].reason, reason);
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.quarantined, 1);
    assert_eq!(runs[0].outcome.failures[0].reason, reason);
    assert_eq!(env.finds("grape").await, ["good.txt"]);

    // Changed at the source: tried again, and indexed.
    env.ctl
        .modify_file(&env.drive, &bomb, "<r>defused dandelion</r>".to_owned())
        .unwrap();
    let fourth = env.sync_on(&engine).await;
    assert_eq!(fourth.status, SyncStatus::Completed, "{fourth:?}");
    assert_eq!((fourth.processed, fourth.failed, fourth.quarantined), (1, 0, 0));
    assert!(fourth.failures.is_empty(), "{:?}", fourth.failures);
    assert_eq!(env.finds("dandelion").await, ["bomb.xml"]);
    assert!(env.store.quarantined_documents(env.kb).await.unwrap().is_empty());
}
