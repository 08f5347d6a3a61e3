//! Users, sessions, sign-in throttling and the housekeeping that purges them; migrations and health.

use super::*;

kbsync_kit::on_both_databases!(
    migrate_and_ping_are_repeatable_and_concurrent_migrations_are_safe,
    create_user_round_trips_and_get_user_finds_it,
    email_uniqueness_ignores_case,
    credentials_lookup_ignores_email_case,
    unknown_user_and_email_are_not_found,
    count_users_counts_every_user,
    session_resolves_to_its_user_until_it_expires,
    deleted_session_no_longer_resolves,
    session_for_unknown_user_is_invalid_reference,
    login_failures_count_per_email_ignoring_case_and_clear,
    login_attempts_past_the_free_ones_wait_out_a_doubling_delay,
    racing_login_attempts_get_through_only_as_many_as_are_free,
    address_attempts_are_limited_per_window_and_successes_are_given_back,
    purge_expired_sessions_removes_only_expired_ones,
    purge_login_failures_removes_only_forgotten_accounts_and_ended_windows,
    purge_sync_runs_keeps_recent_and_running_runs,
    users_by_emails_ignores_case_and_leaves_out_unknown_emails,
    all_user_ids_lists_every_user_in_creation_order,
);

async fn migrate_and_ping_are_repeatable_and_concurrent_migrations_are_safe(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    s.migrate().await.unwrap();
    let (a, b, c) = tokio::join!(s.migrate(), s.migrate(), s.migrate());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    s.ping().await.unwrap();
    assert_eq!(s.count_users().await.unwrap(), 0);
}

async fn create_user_round_trips_and_get_user_finds_it(s: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    let created = s
        .create_user(
            id,
            NewUser {
                email: "Alice@Example.com".into(),
                password_hash: Some("phc".into()),
                display_name: None,
                role: Role::Admin,
            },
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.email, "Alice@Example.com");
    assert_eq!(created.role, Role::Admin);
    assert_eq!(created.created_at, t(5));
    assert_eq!(s.get_user(id).await.unwrap(), created);
}

async fn email_uniqueness_ignores_case(s: Arc<dyn Store>) {
    user(&*s, "bob@example.com", Role::User).await;
    let err = s
        .create_user(
            Uuid::new_v4(),
            NewUser {
                email: "BOB@Example.COM".into(),
                password_hash: Some("x".into()),
                display_name: None,
                role: Role::User,
            },
            t(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.count_users().await.unwrap(), 1);
}

async fn credentials_lookup_ignores_email_case(s: Arc<dyn Store>) {
    let id = user(&*s, "Carol@Example.com", Role::User).await;
    for email in ["carol@example.com", "CAROL@EXAMPLE.COM", "Carol@Example.com"] {
        let creds = s.get_credentials_by_email(email).await.unwrap();
        assert_eq!(creds.user.id, id);
        assert_eq!(creds.user.email, "Carol@Example.com");
        assert_eq!(creds.password_hash.as_deref(), Some("$argon2id$x"));
    }
}

async fn unknown_user_and_email_are_not_found(s: Arc<dyn Store>) {
    assert!(matches!(
        s.get_user(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_credentials_by_email("nobody@example.com").await,
        Err(StoreError::NotFound)
    ));
}

async fn count_users_counts_every_user(s: Arc<dyn Store>) {
    assert_eq!(s.count_users().await.unwrap(), 0);
    user(&*s, "a@example.com", Role::User).await;
    user(&*s, "b@example.com", Role::Admin).await;
    assert_eq!(s.count_users().await.unwrap(), 2);
}

async fn session_resolves_to_its_user_until_it_expires(s: Arc<dyn Store>) {
    let id = user(&*s, "dave@example.com", Role::User).await;
    s.create_session("tokhash", id, t(0), t(3600)).await.unwrap();
    assert_eq!(s.user_for_session("tokhash", t(10)).await.unwrap().id, id);
    assert_eq!(s.user_for_session("tokhash", t(3599)).await.unwrap().id, id);
    assert!(matches!(
        s.user_for_session("tokhash", t(3600)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.user_for_session("tokhash", t(7200)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.user_for_session("other", t(10)).await,
        Err(StoreError::NotFound)
    ));
}

async fn deleted_session_no_longer_resolves(s: Arc<dyn Store>) {
    let id = user(&*s, "erin@example.com", Role::User).await;
    s.create_session("a", id, t(0), t(3600)).await.unwrap();
    s.create_session("b", id, t(0), t(3600)).await.unwrap();
    s.delete_session("a").await.unwrap();
    assert!(matches!(
        s.user_for_session("a", t(1)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.user_for_session("b", t(1)).await.unwrap().id, id);
    // deleting an unknown session is not an error
    s.delete_session("a").await.unwrap();
}

async fn session_for_unknown_user_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_session("x", Uuid::new_v4(), t(0), t(10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn login_failures_count_per_email_ignoring_case_and_clear(s: Arc<dyn Store>) {
    let none = s.login_failures("frank@example.com").await.unwrap();
    assert_eq!(none.count, 0);
    assert_eq!(none.last_failure_at, None);
    let lenient = backoff(10, 1, 60, t(-1000));
    let one = s
        .begin_login_attempt("frank@example.com", t(1), &lenient)
        .await
        .unwrap();
    assert_eq!(one, LoginAttempt::Allowed { failures: 1 });
    let two = s
        .begin_login_attempt("FRANK@example.com", t(2), &lenient)
        .await
        .unwrap();
    assert_eq!(two, LoginAttempt::Allowed { failures: 2 });
    s.begin_login_attempt("grace@example.com", t(3), &lenient)
        .await
        .unwrap();
    let read = s.login_failures("Frank@Example.com").await.unwrap();
    assert_eq!((read.count, read.last_failure_at), (2, Some(t(2))));
    s.clear_login_failures("frank@EXAMPLE.com").await.unwrap();
    assert_eq!(s.login_failures("frank@example.com").await.unwrap().count, 0);
    assert_eq!(s.login_failures("grace@example.com").await.unwrap().count, 1);
}

fn backoff(free_attempts: u32, first_secs: i64, max_secs: i64, forget_before: DateTime<Utc>) -> LoginBackoff {
    LoginBackoff {
        free_attempts,
        first_delay: Duration::seconds(first_secs),
        max_delay: Duration::seconds(max_secs),
        forget_before,
    }
}

async fn login_attempts_past_the_free_ones_wait_out_a_doubling_delay(s: Arc<dyn Store>) {
    let at = |secs: i64| backoff(2, 10, 30, t(secs - 3600));
    let email = "heidi@example.com";
    let allowed = |n| LoginAttempt::Allowed { failures: n };
    assert_eq!(
        s.begin_login_attempt(email, t(0), &at(0)).await.unwrap(),
        allowed(1)
    );
    // The second failure is the last free one: 10 s to wait after it.
    assert_eq!(
        s.begin_login_attempt(email, t(1), &at(1)).await.unwrap(),
        allowed(2)
    );
    let throttled = s.begin_login_attempt(email, t(5), &at(5)).await.unwrap();
    assert_eq!(throttled, LoginAttempt::Throttled { until: t(11) });
    // A refused attempt changes nothing.
    assert_eq!(s.login_failures(email).await.unwrap().count, 2);
    // Then 20 s, then the cap of 30 s.
    assert_eq!(
        s.begin_login_attempt(email, t(11), &at(11)).await.unwrap(),
        allowed(3)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(30), &at(30)).await.unwrap(),
        LoginAttempt::Throttled { until: t(31) }
    );
    assert_eq!(
        s.begin_login_attempt(email, t(31), &at(31)).await.unwrap(),
        allowed(4)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(60), &at(60)).await.unwrap(),
        LoginAttempt::Throttled { until: t(61) }
    );
    assert_eq!(
        s.begin_login_attempt(email, t(61), &at(61)).await.unwrap(),
        allowed(5)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(90), &at(90)).await.unwrap(),
        LoginAttempt::Throttled { until: t(91) }
    );
    // Failures older than the forgetting bound no longer count, even while a delay would run.
    let forgetful = backoff(2, 10, 30, t(62));
    assert_eq!(
        s.begin_login_attempt(email, t(70), &forgetful).await.unwrap(),
        allowed(1)
    );
    // Without free attempts the very first failure starts a delay.
    let strict = backoff(0, 10, 300, t(-3600));
    assert_eq!(
        s.begin_login_attempt("ivan@example.com", t(0), &strict)
            .await
            .unwrap(),
        allowed(1)
    );
    assert_eq!(
        s.begin_login_attempt("ivan@example.com", t(1), &strict)
            .await
            .unwrap(),
        LoginAttempt::Throttled { until: t(20) }
    );
}

async fn racing_login_attempts_get_through_only_as_many_as_are_free(s: Arc<dyn Store>) {
    let rule = backoff(3, 60, 600, t(-3600));
    let attempts = (0..20).map(|_| {
        let s = s.clone();
        tokio::spawn(async move {
            s.begin_login_attempt("judy@example.com", t(0), &rule)
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<LoginAttempt> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut counts: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            LoginAttempt::Allowed { failures } => Some(*failures),
            LoginAttempt::Throttled { .. } => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2, 3], "{outcomes:?}");
    assert_eq!(s.login_failures("judy@example.com").await.unwrap().count, 3);
}

async fn address_attempts_are_limited_per_window_and_successes_are_given_back(s: Arc<dyn Store>) {
    let limit = AddressLimit {
        max_failures: 2,
        window: Duration::seconds(60),
    };
    let address = "192.0.2.7";
    let allowed = |n| LoginAttempt::Allowed { failures: n };
    assert_eq!(
        s.begin_address_attempt(address, t(0), &limit).await.unwrap(),
        allowed(1)
    );
    // A success gives its attempt back.
    s.give_back_address_attempt(address).await.unwrap();
    assert_eq!(
        s.begin_address_attempt(address, t(1), &limit).await.unwrap(),
        allowed(1)
    );
    assert_eq!(
        s.begin_address_attempt(address, t(2), &limit).await.unwrap(),
        allowed(2)
    );
    assert_eq!(
        s.begin_address_attempt(address, t(3), &limit).await.unwrap(),
        LoginAttempt::Throttled { until: t(60) }
    );
    // Refused attempts do not push the window's end back, and other addresses are unaffected.
    assert_eq!(
        s.begin_address_attempt(address, t(59), &limit).await.unwrap(),
        LoginAttempt::Throttled { until: t(60) }
    );
    assert_eq!(
        s.begin_address_attempt("192.0.2.8", t(59), &limit).await.unwrap(),
        allowed(1)
    );
    // A new window starts afresh.
    assert_eq!(
        s.begin_address_attempt(address, t(60), &limit).await.unwrap(),
        allowed(1)
    );
    // Giving back never goes below zero.
    for _ in 0..3 {
        s.give_back_address_attempt(address).await.unwrap();
    }
    s.give_back_address_attempt("198.51.100.1").await.unwrap();
    assert_eq!(
        s.begin_address_attempt(address, t(61), &limit).await.unwrap(),
        allowed(1)
    );
}

async fn purge_expired_sessions_removes_only_expired_ones(s: Arc<dyn Store>) {
    let u = user(&*s, "kim@example.com", Role::User).await;
    s.create_session("old", u, t(0), t(10)).await.unwrap();
    s.create_session("edge", u, t(0), t(20)).await.unwrap();
    s.create_session("live", u, t(0), t(30)).await.unwrap();
    assert_eq!(s.purge_expired_sessions(t(20)).await.unwrap(), 2);
    assert_eq!(s.user_for_session("live", t(20)).await.unwrap().id, u);
    assert!(matches!(
        s.user_for_session("old", t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.purge_expired_sessions(t(20)).await.unwrap(), 0);
}

async fn purge_login_failures_removes_only_forgotten_accounts_and_ended_windows(s: Arc<dyn Store>) {
    let rule = backoff(5, 1, 60, t(-3600));
    s.begin_login_attempt("old@example.com", t(0), &rule)
        .await
        .unwrap();
    s.begin_login_attempt("new@example.com", t(100), &rule)
        .await
        .unwrap();
    let limit = AddressLimit {
        max_failures: 5,
        window: Duration::seconds(60),
    };
    s.begin_address_attempt("192.0.2.1", t(0), &limit).await.unwrap();
    s.begin_address_attempt("192.0.2.2", t(100), &limit)
        .await
        .unwrap();
    assert_eq!(s.purge_login_failures(t(120), t(50)).await.unwrap(), 2);
    assert_eq!(s.login_failures("old@example.com").await.unwrap().count, 0);
    assert_eq!(s.login_failures("new@example.com").await.unwrap().count, 1);
    // The live window still counts: its next attempt is its second.
    assert_eq!(
        s.begin_address_attempt("192.0.2.2", t(121), &limit)
            .await
            .unwrap(),
        LoginAttempt::Allowed { failures: 2 }
    );
    assert_eq!(
        s.begin_address_attempt("192.0.2.1", t(121), &limit)
            .await
            .unwrap(),
        LoginAttempt::Allowed { failures: 1 }
    );
}

async fn purge_sync_runs_keeps_recent_and_running_runs(s: Arc<dyn Store>) {
    let owner = user(&*s, "lee@example.com", Role::User).await;
    let busy = kb(&*s, owner, "busy").await;
    let quiet = kb(&*s, owner, "quiet").await;
    // busy: five finished runs (at 0, 10, 20, 30, 40) and one still running since 1.
    let mut finished = Vec::new();
    for i in 0..5 {
        let id = Uuid::new_v4();
        s.create_sync_run(id, busy, SyncTrigger::Scheduled, None, t(i * 10))
            .await
            .unwrap();
        s.finish_sync_run(
            id,
            &outcome_with(SyncStatus::Failed, vec![failure(1)]),
            t(i * 10 + 5),
        )
        .await
        .unwrap();
        finished.push(id);
    }
    let running = Uuid::new_v4();
    s.create_sync_run(running, busy, SyncTrigger::Manual, None, t(1))
        .await
        .unwrap();
    // quiet: one old finished run.
    let lone = Uuid::new_v4();
    s.create_sync_run(lone, quiet, SyncTrigger::Manual, None, t(0))
        .await
        .unwrap();
    s.finish_sync_run(lone, &outcome_with(SyncStatus::Completed, vec![]), t(5))
        .await
        .unwrap();

    // Older than t(30), keeping the two most recent per knowledge base: busy loses its runs
    // finished at 5, 15 and 25 but not the running one; quiet keeps its only run.
    assert_eq!(s.purge_sync_runs(t(30), 2).await.unwrap(), 3);
    let mut left: Vec<Uuid> = s
        .list_sync_runs(busy, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    left.sort();
    let mut expected = vec![finished[3], finished[4], running];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(s.list_sync_runs(quiet, 100).await.unwrap().len(), 1);
    // The failed files of a deleted run went with it.
    assert!(s.list_sync_failures(finished[0], 0).await.unwrap().is_empty());
    assert_eq!(s.list_sync_failures(finished[3], 0).await.unwrap().len(), 1);
    // Keeping none: every finished run before the bound goes, the running one stays.
    assert_eq!(s.purge_sync_runs(t(1000), 0).await.unwrap(), 3);
    let left: Vec<Uuid> = s
        .list_sync_runs(busy, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec![running]);
}

async fn users_by_emails_ignores_case_and_leaves_out_unknown_emails(s: Arc<dyn Store>) {
    let alice = user(&*s, "Alice@Example.com", Role::User).await;
    let bob = user(&*s, "bob@example.com", Role::Admin).await;
    user(&*s, "carol@example.com", Role::User).await;
    assert!(s.users_by_emails(&[]).await.unwrap().is_empty());
    let found = s
        .users_by_emails(&[
            "BOB@example.COM".into(),
            "nobody@example.com".into(),
            "alice@example.com".into(),
            " Alice@EXAMPLE.com ".into(),
        ])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![alice, bob]);
    assert_eq!(found[0].email, "Alice@Example.com", "the email as it was given");
    assert_eq!(found[1].role, Role::Admin);
    assert!(
        s.users_by_emails(&["nobody@example.com".into()])
            .await
            .unwrap()
            .is_empty()
    );
    // Many emails at once (more than one batch).
    let many: Vec<String> = (0..1200)
        .map(|i| format!("x{i}@example.com"))
        .chain(["CAROL@example.com".to_owned()])
        .collect();
    assert_eq!(s.users_by_emails(&many).await.unwrap().len(), 1);
}

async fn all_user_ids_lists_every_user_in_creation_order(s: Arc<dyn Store>) {
    assert!(s.all_user_ids().await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (i, at) in [5, 1, 3].into_iter().enumerate() {
        let id = Uuid::new_v4();
        s.create_user(
            id,
            NewUser {
                email: format!("all{i}@example.com"),
                password_hash: Some("$argon2id$x".into()),
                display_name: None,
                role: Role::User,
            },
            t(at),
        )
        .await
        .unwrap();
        ids.push((at, id));
    }
    ids.sort();
    assert_eq!(
        s.all_user_ids().await.unwrap(),
        ids.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    );
}
