//! Publications into Open WebUI: turned on and off, requested, claimed by one instance at a time
//! (a lease that expires), finished with their outcome and history, and a request that arrives
//! during a publish survives it.

use super::*;
use kbsync_core::{
    LeftOutReader, PublicationCounts, PublicationStatus, PublishFailure, PublishOutcome, PublishRun,
};

kbsync_kit::on_both_databases!(
    enabling_publishing_makes_a_pending_publication_with_a_request,
    enabling_again_keeps_the_created_knowledge_base_unless_another_is_named,
    publishing_an_unknown_knowledge_base_is_invalid_reference,
    a_publication_is_claimed_by_one_owner_until_its_lease_expires,
    finishing_records_the_outcome_and_history_and_answers_the_request,
    a_request_during_a_publish_is_kept_for_the_next_one,
    a_failed_publish_keeps_the_last_published_time,
    only_the_lease_owner_writes_progress_knowledge_id_and_outcome,
    disabling_forgets_the_publication_and_its_history,
    the_digest_of_a_complete_publish_lets_an_unchanged_one_release_until_a_comparing_request_or_new_target,
    publications_go_with_their_knowledge_base,
);

fn outcome(status: PublicationStatus, uploaded: u64) -> PublishOutcome {
    PublishOutcome {
        status,
        error: (status == PublicationStatus::Failed).then(|| "Open WebUI is unreachable".to_owned()),
        counts: PublicationCounts {
            published: 3,
            uploaded,
            unchanged: 3 - uploaded,
            failed: 1,
            readers_granted: 2,
            readers_left_out: 1,
            ..PublicationCounts::default()
        },
        failures: vec![PublishFailure {
            path: "Docs/broken.pdf".into(),
            error: "Extracted content is not available for this file.".into(),
        }],
        left_out: vec![LeftOutReader {
            email: "partial@example.com".into(),
            reason: "may read 1 of 3 documents".into(),
        }],
    }
}

fn run(kb_id: KbId, started: i64, finished: i64, outcome: PublishOutcome) -> PublishRun {
    PublishRun {
        id: Uuid::new_v4(),
        kb_id,
        started_at: t(started),
        finished_at: t(finished),
        outcome,
    }
}

async fn publishing_kb(s: &dyn Store) -> KbId {
    let owner = user(s, "publisher@example.com", Role::User).await;
    kb(s, owner, "Published").await
}

async fn enabling_publishing_makes_a_pending_publication_with_a_request(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    assert_eq!(s.publication(k).await.unwrap(), None);
    let p = s.enable_publication(k, None, t(5)).await.unwrap();
    assert_eq!(p.kb_id, k);
    assert_eq!(p.knowledge_id, None);
    assert_eq!(p.status, PublicationStatus::Pending);
    assert_eq!(p.requested_at, Some(t(5)));
    assert_eq!(p.enabled_at, t(5));
    assert_eq!(p.last_published_at, None);
    assert_eq!(p.counts, PublicationCounts::default());
    assert!(p.failures.is_empty() && p.left_out.is_empty());
    assert_eq!(s.publication(k).await.unwrap(), Some(p));
    assert_eq!(s.due_publications(t(5), 10).await.unwrap(), vec![k]);
}

async fn enabling_again_keeps_the_created_knowledge_base_unless_another_is_named(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    assert!(s.set_publication_knowledge_id(k, "i1", "owui-1").await.unwrap());
    let again = s.enable_publication(k, None, t(2)).await.unwrap();
    assert_eq!(again.knowledge_id.as_deref(), Some("owui-1"));
    let other = s.enable_publication(k, Some("owui-2"), t(3)).await.unwrap();
    assert_eq!(other.knowledge_id.as_deref(), Some("owui-2"));
    assert_eq!(other.requested_at, Some(t(3)));
}

async fn publishing_an_unknown_knowledge_base_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .enable_publication(Uuid::new_v4(), None, t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert!(!s.request_publication(Uuid::new_v4(), t(0), false).await.unwrap());
}

async fn a_publication_is_claimed_by_one_owner_until_its_lease_expires(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    assert_eq!(s.claim_publication(k, "i1", t(0), t(60)).await.unwrap(), None);
    s.enable_publication(k, None, t(0)).await.unwrap();
    let claimed = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    assert_eq!(claimed.status, PublicationStatus::Publishing);
    assert_eq!(claimed.requested_at, Some(t(0)));
    assert_eq!(claimed.last_started_at, Some(t(1)));
    assert_eq!(s.claim_publication(k, "i2", t(2), t(62)).await.unwrap(), None);
    assert!(s.due_publications(t(2), 10).await.unwrap().is_empty());
    assert!(s.renew_publication_lease(k, "i1", t(90)).await.unwrap());
    assert!(!s.renew_publication_lease(k, "i2", t(90)).await.unwrap());
    assert_eq!(s.claim_publication(k, "i2", t(80), t(140)).await.unwrap(), None);
    // The owner died: once the lease runs out, the request is still there and another takes it.
    assert_eq!(s.due_publications(t(90), 10).await.unwrap(), vec![k]);
    let taken = s
        .claim_publication(k, "i2", t(90), t(150))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.requested_at, Some(t(0)));
    assert!(!s.renew_publication_lease(k, "i1", t(200)).await.unwrap());
}

async fn finishing_records_the_outcome_and_history_and_answers_the_request(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let claimed = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    s.set_publication_progress(k, "i1", 2, 5).await.unwrap();
    let during = s.publication(k).await.unwrap().unwrap();
    assert_eq!((during.progress_done, during.progress_total), (2, 5));
    let r = run(k, 1, 9, outcome(PublicationStatus::Published, 2));
    assert!(
        s.finish_publication(&r, "i1", claimed.requested_at, None)
            .await
            .unwrap()
    );
    let p = s.publication(k).await.unwrap().unwrap();
    assert_eq!(p.status, PublicationStatus::Published);
    assert_eq!(p.requested_at, None);
    assert_eq!(p.last_published_at, Some(t(9)));
    assert_eq!(p.counts, r.outcome.counts);
    assert_eq!(p.failures, r.outcome.failures);
    assert_eq!(p.left_out, r.outcome.left_out);
    assert!(s.due_publications(t(100), 10).await.unwrap().is_empty());
    assert_eq!(s.claim_publication(k, "i1", t(100), t(160)).await.unwrap(), None);
    assert_eq!(s.publish_runs(k, 10).await.unwrap(), vec![r]);
}

async fn a_request_during_a_publish_is_kept_for_the_next_one(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let claimed = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    assert!(s.request_publication(k, t(5), false).await.unwrap());
    let r = run(k, 1, 9, outcome(PublicationStatus::Published, 3));
    assert!(
        s.finish_publication(&r, "i1", claimed.requested_at, None)
            .await
            .unwrap()
    );
    let p = s.publication(k).await.unwrap().unwrap();
    assert_eq!(p.requested_at, Some(t(5)));
    assert_eq!(s.due_publications(t(10), 10).await.unwrap(), vec![k]);
}

async fn a_failed_publish_keeps_the_last_published_time(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let c = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    let ok = run(k, 1, 2, outcome(PublicationStatus::Published, 3));
    s.finish_publication(&ok, "i1", c.requested_at, None)
        .await
        .unwrap();
    s.request_publication(k, t(10), false).await.unwrap();
    let c = s.claim_publication(k, "i1", t(11), t(70)).await.unwrap().unwrap();
    let failed = run(k, 11, 12, outcome(PublicationStatus::Failed, 0));
    s.finish_publication(&failed, "i1", c.requested_at, None)
        .await
        .unwrap();
    let p = s.publication(k).await.unwrap().unwrap();
    assert_eq!(p.status, PublicationStatus::Failed);
    assert_eq!(p.error.as_deref(), Some("Open WebUI is unreachable"));
    assert_eq!(p.last_published_at, Some(t(2)));
    assert_eq!(s.publish_runs(k, 10).await.unwrap(), vec![failed, ok]);
}

async fn only_the_lease_owner_writes_progress_knowledge_id_and_outcome(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let c = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    assert!(!s.set_publication_knowledge_id(k, "i2", "owui-x").await.unwrap());
    s.set_publication_progress(k, "i2", 7, 9).await.unwrap();
    let r = run(k, 1, 2, outcome(PublicationStatus::Published, 1));
    assert!(
        !s.finish_publication(&r, "i2", c.requested_at, None)
            .await
            .unwrap()
    );
    let p = s.publication(k).await.unwrap().unwrap();
    assert_eq!(p.knowledge_id, None);
    assert_eq!((p.progress_done, p.progress_total), (0, 0));
    assert_eq!(p.status, PublicationStatus::Publishing);
    assert!(s.publish_runs(k, 10).await.unwrap().is_empty());
}

async fn disabling_forgets_the_publication_and_its_history(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    assert!(!s.disable_publication(k).await.unwrap());
    s.enable_publication(k, None, t(0)).await.unwrap();
    let c = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    let r = run(k, 1, 2, outcome(PublicationStatus::Published, 1));
    s.finish_publication(&r, "i1", c.requested_at, None)
        .await
        .unwrap();
    assert!(s.disable_publication(k).await.unwrap());
    assert_eq!(s.publication(k).await.unwrap(), None);
    assert!(s.publish_runs(k, 10).await.unwrap().is_empty());
    assert!(!s.request_publication(k, t(5), false).await.unwrap());
    assert!(s.due_publications(t(5), 10).await.unwrap().is_empty());
}

async fn publications_go_with_their_knowledge_base(s: Arc<dyn Store>) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let c = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    let r = run(k, 1, 2, outcome(PublicationStatus::Published, 1));
    s.finish_publication(&r, "i1", c.requested_at, None)
        .await
        .unwrap();
    s.delete_kb(k, t(0)).await.unwrap();
    assert_eq!(s.publication(k).await.unwrap(), None);
    assert!(s.publish_runs(k, 10).await.unwrap().is_empty());
}

async fn the_digest_of_a_complete_publish_lets_an_unchanged_one_release_until_a_comparing_request_or_new_target(
    s: Arc<dyn Store>,
) {
    let k = publishing_kb(s.as_ref()).await;
    s.enable_publication(k, None, t(0)).await.unwrap();
    let c = s.claim_publication(k, "i1", t(1), t(60)).await.unwrap().unwrap();
    assert_eq!(c.published_digest, None);
    let r = run(k, 1, 2, outcome(PublicationStatus::Published, 1));
    s.finish_publication(&r, "i1", c.requested_at, Some("d1"))
        .await
        .unwrap();
    s.request_publication(k, t(3), false).await.unwrap();
    let c = s.claim_publication(k, "i1", t(4), t(60)).await.unwrap().unwrap();
    assert_eq!(c.published_digest.as_deref(), Some("d1"));
    // Nothing changed: released without history, published again, the request answered.
    assert!(!s.release_publication(k, "i2", c.requested_at).await.unwrap());
    assert!(s.release_publication(k, "i1", c.requested_at).await.unwrap());
    let p = s.publication(k).await.unwrap().unwrap();
    assert_eq!(p.status, PublicationStatus::Published);
    assert_eq!(p.requested_at, None);
    assert_eq!(p.published_digest.as_deref(), Some("d1"));
    assert_eq!(s.publish_runs(k, 10).await.unwrap().len(), 1);
    s.request_publication(k, t(6), true).await.unwrap();
    assert_eq!(s.publication(k).await.unwrap().unwrap().published_digest, None);
    let c = s.claim_publication(k, "i1", t(7), t(60)).await.unwrap().unwrap();
    let r = run(k, 7, 8, outcome(PublicationStatus::Published, 0));
    s.finish_publication(&r, "i1", c.requested_at, Some("d2"))
        .await
        .unwrap();
    s.enable_publication(k, Some("owui-9"), t(9)).await.unwrap();
    assert_eq!(s.publication(k).await.unwrap().unwrap().published_digest, None);
}
