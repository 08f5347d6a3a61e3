//! OAuth: pending authorizations (state) and stored connections with their refresh lease.

use super::*;

kbsync_kit::on_both_databases!(
    oauth_state_is_taken_exactly_once_and_round_trips,
    expired_oauth_state_is_not_found_and_is_gone,
    concurrent_takes_of_one_state_have_exactly_one_winner,
    oauth_state_for_unknown_kb_is_invalid_reference_and_duplicate_is_conflict,
    delete_expired_oauth_states_removes_only_expired_ones,
    connection_round_trips_and_upsert_replaces_it,
    connection_for_unknown_kb_is_invalid_reference,
    an_app_only_connection_has_no_refresh_token_and_a_reconnect_may_change_the_kind,
    delete_connection_forgets_it_and_unknown_is_not_found,
    refresh_lease_is_exclusive_until_released_or_expired,
    concurrent_lease_attempts_have_exactly_one_winner,
    store_refreshed_tokens_writes_rotation_and_releases_the_lease,
    needs_reauth_marks_kb_and_a_new_connection_clears_it,
    deleting_kb_removes_its_connection_and_pending_states,
);

fn new_state(kb_id: KbId, user_id: UserId, hash: &str, created: DateTime<Utc>) -> NewOAuthState {
    NewOAuthState {
        state_hash: hash.into(),
        kb_id,
        user_id,
        datasource: DatasourceKind::OneDrive,
        code_verifier: enc("verifier"),
        binding_hash: format!("binding-of-{hash}"),
        created_at: created,
        expires_at: created + Duration::minutes(10),
    }
}

async fn oauth_state_is_taken_exactly_once_and_round_trips(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    let taken = s.take_oauth_state(&hash(1), t(60)).await.unwrap();
    assert_eq!(
        taken,
        OAuthState {
            kb_id,
            user_id: owner,
            datasource: DatasourceKind::OneDrive,
            code_verifier: enc("verifier"),
            binding_hash: format!("binding-of-{}", hash(1)),
            created_at: t(0),
            expires_at: t(600),
        }
    );
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(61)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.take_oauth_state(&hash(2), t(61)).await,
        Err(StoreError::NotFound)
    ));
}

async fn expired_oauth_state_is_not_found_and_is_gone(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    // Expired exactly at expires_at.
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(600)).await,
        Err(StoreError::NotFound)
    ));
    // The expired take removed it: even an earlier clock does not find it again.
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(1)).await,
        Err(StoreError::NotFound)
    ));
}

async fn concurrent_takes_of_one_state_have_exactly_one_winner(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(7), t(0)))
        .await
        .unwrap();
    let takes = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.take_oauth_state(&hash(7), t(1)).await })
    });
    let results = futures::future::join_all(takes).await;
    let mut wins = 0;
    for r in results {
        match r.unwrap() {
            Ok(state) => {
                assert_eq!(state.kb_id, kb_id);
                wins += 1;
            }
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn oauth_state_for_unknown_kb_is_invalid_reference_and_duplicate_is_conflict(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    let err = s
        .create_oauth_state(new_state(Uuid::new_v4(), owner, &hash(1), t(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    s.create_oauth_state(new_state(kb_id, owner, &hash(2), t(0)))
        .await
        .unwrap();
    let err = s
        .create_oauth_state(new_state(kb_id, owner, &hash(2), t(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn delete_expired_oauth_states_removes_only_expired_ones(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    s.create_oauth_state(new_state(kb_id, owner, &hash(2), t(300)))
        .await
        .unwrap();
    assert_eq!(s.delete_expired_oauth_states(t(700)).await.unwrap(), 1);
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(0)).await,
        Err(StoreError::NotFound)
    ));
    s.take_oauth_state(&hash(2), t(700)).await.unwrap();
}

fn refreshed(refresh: Option<&str>, access: &str, expires_at: DateTime<Utc>) -> RefreshedTokens {
    RefreshedTokens {
        refresh_token: refresh.map(enc),
        access_token: StoredAccessToken {
            token: enc(access),
            expires_at,
        },
    }
}

async fn connection_round_trips_and_upsert_replaces_it(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    let stored = s
        .upsert_connection(new_connection(kb_id, "r1"), t(5))
        .await
        .unwrap();
    let expected = Connection {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        credentials: ConnectionCredentials::Delegated,
        refresh_token: Some(enc("r1")),
        access_token: Some(StoredAccessToken {
            token: enc("access-0"),
            expires_at: t(3600),
        }),
        tenant: Some("tenant-1".into()),
        stored_at: t(5),
        last_refreshed_at: None,
        needs_reauth: false,
        refresh_lease: None,
    };
    assert_eq!(stored, expected);
    assert_eq!(s.get_connection(kb_id).await.unwrap(), expected);

    // A refresh, then a reconnect: everything from the refresh is replaced.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(11))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(12), t(40))
            .await
            .unwrap()
    );
    let mut again = new_connection(kb_id, "r3");
    again.access_token = None;
    again.tenant = None;
    let replaced = s.upsert_connection(again, t(20)).await.unwrap();
    assert_eq!(replaced.refresh_token, Some(enc("r3")));
    assert_eq!(replaced.access_token, None);
    assert_eq!(replaced.tenant, None);
    assert_eq!(replaced.stored_at, t(20));
    assert_eq!(replaced.last_refreshed_at, None);
    assert_eq!(replaced.refresh_lease, None, "a reconnect drops any lease");
    assert_eq!(s.get_connection(kb_id).await.unwrap(), replaced);
}

async fn connection_for_unknown_kb_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .upsert_connection(new_connection(Uuid::new_v4(), "r"), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn delete_connection_forgets_it_and_unknown_is_not_found(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.delete_connection(kb_id).await.unwrap();
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.delete_connection(kb_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.try_acquire_refresh_lease(kb_id, "a", t(0), t(30)).await,
        Err(StoreError::NotFound)
    ));
}

async fn refresh_lease_is_exclusive_until_released_or_expired(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(0), t(30))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_connection(kb_id).await.unwrap().refresh_lease,
        Some(RefreshLease {
            owner: "a".into(),
            until: t(30)
        })
    );
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "b", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap(),
        "not re-entrant"
    );
    // Releasing someone else's lease does nothing.
    s.release_refresh_lease(kb_id, "b").await.unwrap();
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "b", t(10), t(40))
            .await
            .unwrap()
    );
    s.release_refresh_lease(kb_id, "a").await.unwrap();
    assert!(
        s.try_acquire_refresh_lease(kb_id, "b", t(11), t(41))
            .await
            .unwrap()
    );
    // b's lease expires at t(41): then c may take it over.
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "c", t(40), t(70))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "c", t(41), t(71))
            .await
            .unwrap()
    );
    // b, whose lease was taken over, can no longer store or mark anything.
    assert!(
        !s.store_refreshed_tokens(kb_id, "b", refreshed(Some("rb"), "ab", t(5000)), t(42))
            .await
            .unwrap()
    );
    assert!(!s.mark_needs_reauth(kb_id, "b", t(0)).await.unwrap());
    assert_eq!(
        s.get_connection(kb_id).await.unwrap().refresh_token,
        Some(enc("r1"))
    );
}

async fn concurrent_lease_attempts_have_exactly_one_winner(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.try_acquire_refresh_lease(kb_id, &format!("owner-{i}"), t(1), t(31))
                .await
                .unwrap()
        })
    });
    let won: Vec<bool> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

async fn store_refreshed_tokens_writes_rotation_and_releases_the_lease(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    // Without the lease nothing is written.
    assert!(
        !s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(10))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(11))
            .await
            .unwrap()
    );
    let c = s.get_connection(kb_id).await.unwrap();
    assert_eq!(c.refresh_token, Some(enc("r2")));
    assert_eq!(
        c.access_token,
        Some(StoredAccessToken {
            token: enc("access-1"),
            expires_at: t(4000)
        })
    );
    assert_eq!(c.last_refreshed_at, Some(t(11)));
    assert_eq!(c.stored_at, t(0));
    assert_eq!(c.refresh_lease, None);
    // A server that does not rotate: the stored refresh token stays.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "b", t(20), t(50))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "b", refreshed(None, "access-2", t(5000)), t(21))
            .await
            .unwrap()
    );
    let c = s.get_connection(kb_id).await.unwrap();
    assert_eq!(c.refresh_token, Some(enc("r2")));
    assert_eq!(c.access_token.unwrap().token, enc("access-2"));
}

async fn needs_reauth_marks_kb_and_a_new_connection_clears_it(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (_, other_kb) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.upsert_connection(new_connection(other_kb, "r1"), t(0))
        .await
        .unwrap();
    // Only the lease holder may mark it.
    assert!(!s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(1), t(31))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    let c = s.get_connection(kb_id).await.unwrap();
    assert!(c.needs_reauth);
    assert_eq!(c.access_token, None, "the access token is dropped");
    assert_eq!(c.refresh_lease, None);
    assert_eq!(
        s.get_kb(kb_id).await.unwrap().sync_status,
        SyncStatus::NeedsReauth
    );
    assert_eq!(s.get_kb(other_kb).await.unwrap().sync_status, SyncStatus::Idle);
    assert!(!s.get_connection(other_kb).await.unwrap().needs_reauth);

    let renewed = s
        .upsert_connection(new_connection(kb_id, "r2"), t(100))
        .await
        .unwrap();
    assert!(!renewed.needs_reauth);
    assert_eq!(s.get_kb(kb_id).await.unwrap().sync_status, SyncStatus::Idle);

    // Forgetting a connection that needs re-authorization also leaves nothing to re-authorize.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(101), t(131))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    s.delete_connection(kb_id).await.unwrap();
    assert_eq!(s.get_kb(kb_id).await.unwrap().sync_status, SyncStatus::Idle);
}

async fn deleting_kb_removes_its_connection_and_pending_states(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.create_oauth_state(new_state(kb_id, owner, &hash(3), t(0)))
        .await
        .unwrap();
    s.delete_kb(kb_id, t(0)).await.unwrap();
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.take_oauth_state(&hash(3), t(1)).await,
        Err(StoreError::NotFound)
    ));
}

async fn an_app_only_connection_has_no_refresh_token_and_a_reconnect_may_change_the_kind(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let app = NewConnection {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        credentials: ConnectionCredentials::AppOnly,
        refresh_token: None,
        access_token: None,
        tenant: Some("tenant-1".into()),
    };
    let stored = s.upsert_connection(app, t(5)).await.unwrap();
    assert_eq!(stored.credentials, ConnectionCredentials::AppOnly);
    assert_eq!(stored.refresh_token, None);
    assert_eq!(s.get_connection(kb_id).await.unwrap(), stored);
    // A user connects it by delegation afterwards, and back to app-only.
    let delegated = s
        .upsert_connection(new_connection(kb_id, "r1"), t(6))
        .await
        .unwrap();
    assert_eq!(delegated.credentials, ConnectionCredentials::Delegated);
    assert_eq!(delegated.refresh_token, Some(enc("r1")));
    let mut again = new_connection(kb_id, "unused");
    again.credentials = ConnectionCredentials::AppOnly;
    again.refresh_token = None;
    again.access_token = None;
    let back = s.upsert_connection(again, t(7)).await.unwrap();
    assert_eq!(
        (back.credentials, back.refresh_token),
        (ConnectionCredentials::AppOnly, None)
    );
    // A delegated connection without a refresh token is refused by the schema.
    let mut broken = new_connection(kb_id, "unused");
    broken.refresh_token = None;
    assert!(s.upsert_connection(broken, t(8)).await.is_err());
}
