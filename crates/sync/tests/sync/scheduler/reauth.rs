//! Knowledge bases whose connection needs re-authorization: never claimed, released unrun, and
//! their documents' access lists withdrawn after the grace period.

use super::*;

kbsync_kit::on_both_databases!(
    kbs_needing_reauth_local_unconnected_or_without_source_are_never_claimed,
    document_access_of_a_kb_needing_reauth_is_withdrawn_by_the_tick_once_the_grace_period_is_over,
    a_run_refused_the_stored_connection_marks_it_needs_reauth,
    a_claimed_kb_whose_tokens_need_reauth_is_released_without_running,
);

async fn document_access_of_a_kb_needing_reauth_is_withdrawn_by_the_tick_once_the_grace_period_is_over(
    store: Arc<dyn Store>,
) {
    let w = world(store).await;
    let kb = w.synced_kb("lapsing", 1).await;
    let mut users = Vec::new();
    for name in ["synced", "manual"] {
        let id = Uuid::new_v4();
        w.store
            .create_user(
                id,
                NewUser {
                    email: format!("{name}-{id}@example.com"),
                    password_hash: Some("$argon2id$x".into()),
                    display_name: None,
                    role: Role::User,
                },
                w.now(),
            )
            .await
            .unwrap();
        users.push(id);
    }
    let (synced, manual) = (users[0], users[1]);
    let doc = w
        .store
        .create_document(
            Uuid::new_v4(),
            kbsync_store::NewDocument {
                kb_id: kb,
                name: "a.txt".into(),
                path: "a.txt".into(),
                mime: "text/plain".into(),
                size: 1,
                content_hash: "h".into(),
                source_item_id: Some("item-1".into()),
                web_url: None,
            },
            w.now(),
        )
        .await
        .unwrap();
    let synced_email = w.store.get_user(synced).await.unwrap().email.to_lowercase();
    w.store
        .set_document_acls(
            kb,
            &[kbsync_store::DocumentAcl {
                source_item_id: "item-1".into(),
                principals: vec![format!("email:{synced_email}")],
            }],
            w.now(),
        )
        .await
        .unwrap();
    w.store.set_manual_grants(kb, &[manual], &[]).await.unwrap();
    assert!(
        w.store
            .try_acquire_refresh_lease(kb, "oauth", w.now(), w.now() + minutes(1))
            .await
            .unwrap()
    );
    assert!(w.store.mark_needs_reauth(kb, "oauth", w.now()).await.unwrap());
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    scheduler.tick().await.unwrap();
    assert!(w.store.may_read_document(kb, doc.id, synced).await.unwrap());
    w.clock
        .advance(chrono::Duration::hours(72) - chrono::Duration::seconds(1));
    scheduler.tick().await.unwrap();
    assert!(w.store.reads_documents_of(kb, synced).await.unwrap());

    w.clock.advance(chrono::Duration::seconds(1));
    scheduler.tick().await.unwrap();
    assert!(!w.store.reads_documents_of(kb, synced).await.unwrap());
    assert!(!w.store.may_read_document(kb, doc.id, synced).await.unwrap());
    assert_eq!(
        w.store.strongest_grant(kb, manual).await.unwrap(),
        Some(kbsync_core::Permission::Read)
    );
    assert_eq!(w.store.sharing_read_at(kb).await.unwrap(), None);
    idle(&runner).await;
    assert!(w.runs(kb).await.is_empty());
}

async fn kbs_needing_reauth_local_unconnected_or_without_source_are_never_claimed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let reauth = w.synced_kb("reauth", 1).await;
    assert!(
        w.store
            .try_acquire_refresh_lease(reauth, "oauth", w.now(), w.now() + minutes(1))
            .await
            .unwrap()
    );
    assert!(
        w.store
            .mark_needs_reauth(reauth, "oauth", w.clock.now())
            .await
            .unwrap()
    );
    let local = w.create_kb("local", KbType::Local).await;
    w.add_folder(local, "local", 1).await;
    w.connect(local).await;
    let unconnected = w.create_kb("unconnected", KbType::OneDrive).await;
    w.add_folder(unconnected, "unconnected", 1).await;
    let sourceless = w.create_kb("sourceless", KbType::OneDrive).await;
    w.connect(sourceless).await;
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 0);
    w.clock.advance(chrono::Duration::days(30));
    assert_eq!(scheduler.tick().await.unwrap(), 0);
    idle(&runner).await;
    for kb in [reauth, local, unconnected, sourceless] {
        assert!(w.runs(kb).await.is_empty());
        assert!(!w.state(kb).await.running);
    }
    assert_eq!(w.downloads(), 0);
    // A manual start says why.
    assert!(matches!(
        runner.start_manual(local, None).await,
        Err(StartError::Unsupported)
    ));
    assert!(matches!(
        runner.start_manual(reauth, None).await,
        Err(StartError::NeedsReauth)
    ));
    assert!(matches!(
        runner.start_manual(unconnected, None).await,
        Err(StartError::NotConnected)
    ));
    assert!(matches!(
        runner.start_manual(Uuid::new_v4(), None).await,
        Err(StartError::NotFound)
    ));
    assert_eq!(runner.running(), 0);
}

async fn a_run_refused_the_stored_connection_marks_it_needs_reauth(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("refused", 1).await;
    let browser = w.synced_kb("browser", 1).await;
    w.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/**", FaultAction::Unauthorized));
    let runner = w.runner("instance-a", settings());

    // A browser-supplied token that is refused says nothing about the stored connection.
    runner
        .start_manual(browser, Some(AccessToken::new("browser-token")))
        .await
        .unwrap();
    idle(&runner).await;
    assert_eq!(w.runs(browser).await[0].outcome.status, SyncStatus::NeedsReauth);
    assert!(!w.store.get_connection(browser).await.unwrap().needs_reauth);

    runner.start_manual(kb, None).await.unwrap();
    idle(&runner).await;
    assert_eq!(w.runs(kb).await[0].outcome.status, SyncStatus::NeedsReauth);
    assert!(w.store.get_connection(kb).await.unwrap().needs_reauth);
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::NeedsReauth);
    assert_eq!(state.consecutive_failures, 0, "not retried as a failure");

    // The scheduler skips it until the user connects again.
    w.ctl.clear_faults();
    w.clock.advance(chrono::Duration::days(2));
    let scheduler = w.scheduler(&runner, 10);
    assert_eq!(
        scheduler.tick().await.unwrap(),
        1,
        "only the browser-token KB is due"
    );
    idle(&runner).await;
    assert_eq!(w.runs(kb).await.len(), 1);
    w.connect(kb).await;
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    assert_eq!(w.runs(kb).await[0].outcome.status, SyncStatus::Completed);
}

async fn a_claimed_kb_whose_tokens_need_reauth_is_released_without_running(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("stale-connection", 1).await;
    // The store still sees a usable connection, but the resolver refuses (e.g. the connection
    // was renewed elsewhere a moment ago, or tokens cannot be had): the claim is given back.
    struct Refusing;
    #[async_trait]
    impl DatasourceResolver for Refusing {
        fn datasource(&self, _: DatasourceKind) -> Option<Arc<dyn Datasource>> {
            None
        }
        async fn tokens(&self, _: KbId) -> Result<StoredTokens, ResolveError> {
            Err(ResolveError::NeedsReauth)
        }
        async fn mark_needs_reauth(&self, _: KbId, _: DateTime<Utc>) -> Result<bool, ResolveError> {
            Ok(false)
        }
    }
    struct NeedsReauth(Arc<OneDrive>);
    #[async_trait]
    impl DatasourceResolver for NeedsReauth {
        fn datasource(&self, _: DatasourceKind) -> Option<Arc<dyn Datasource>> {
            Some(self.0.clone())
        }
        async fn tokens(&self, _: KbId) -> Result<StoredTokens, ResolveError> {
            Err(ResolveError::NeedsReauth)
        }
        async fn mark_needs_reauth(&self, _: KbId, _: DateTime<Utc>) -> Result<bool, ResolveError> {
            Ok(false)
        }
    }
    let runner = w.runner_with(
        Arc::new(NeedsReauth(w.datasource.clone())),
        "instance-a",
        settings(),
    );
    let t0 = w.now();
    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 0);
    idle(&runner).await;
    assert!(w.runs(kb).await.is_empty());
    let state = w.state(kb).await;
    assert!(!state.running, "the lease was given back");
    assert_between(state.next_sync_at.unwrap(), t0, minutes(60), minutes(66));
    assert_eq!(state.last_sync_at, None, "it did not run");

    // Without a datasource configured it is given back the same way.
    w.clock.advance(minutes(70));
    let unconfigured = w.runner_with(Arc::new(Refusing), "instance-b", settings());
    assert_eq!(w.scheduler(&unconfigured, 10).tick().await.unwrap(), 0);
    assert!(!w.state(kb).await.running);
    assert!(w.runs(kb).await.is_empty());
    assert!(matches!(
        unconfigured.start_manual(kb, None).await,
        Err(StartError::Unsupported)
    ));
}
