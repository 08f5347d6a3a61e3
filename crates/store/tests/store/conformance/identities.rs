//! Accounts that sign in through an OpenID provider: identities linked to accounts, password-less
//! accounts, and the sign-ins in flight.

use super::*;
use kbsync_store::SignInFlowRecord;

kbsync_kit::on_both_databases!(
    an_identity_resolves_to_the_account_it_was_linked_to_and_only_exactly,
    an_identity_links_to_one_account_only,
    linking_to_an_unknown_user_is_an_invalid_reference,
    a_sign_in_refreshes_the_accounts_email_and_name_but_not_onto_anothers_email,
    a_password_less_account_has_no_password_hash,
    a_sign_in_flow_is_taken_once_and_not_after_it_expires,
    expired_sign_in_flows_are_purged_and_live_ones_kept,
);

const ISSUER: &str = "https://login.example/tenant/v2.0";

async fn an_identity_resolves_to_the_account_it_was_linked_to_and_only_exactly(s: Arc<dyn Store>) {
    let pat = user(&*s, "pat@example.com", Role::User).await;
    assert!(matches!(
        s.user_for_identity(ISSUER, "sub-pat").await,
        Err(StoreError::NotFound)
    ));
    s.link_identity(ISSUER, "sub-pat", pat, t(1)).await.unwrap();
    assert_eq!(s.user_for_identity(ISSUER, "sub-pat").await.unwrap().id, pat);
    // Issuer and subject compare exactly: another issuer's (or a differently cased) subject is someone else.
    for (issuer, subject) in [
        ("https://login.example/other/v2.0", "sub-pat"),
        (ISSUER, "SUB-PAT"),
        ("https://login.example/tenant/v2.0/", "sub-pat"),
    ] {
        assert!(
            matches!(
                s.user_for_identity(issuer, subject).await,
                Err(StoreError::NotFound)
            ),
            "{issuer} {subject}"
        );
    }
}

async fn an_identity_links_to_one_account_only(s: Arc<dyn Store>) {
    let pat = user(&*s, "pat@example.com", Role::User).await;
    let sam = user(&*s, "sam@example.com", Role::User).await;
    s.link_identity(ISSUER, "sub-1", pat, t(1)).await.unwrap();
    let err = s.link_identity(ISSUER, "sub-1", sam, t(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.user_for_identity(ISSUER, "sub-1").await.unwrap().id, pat);
    // One account may hold several identities (another provider, or a new subject).
    s.link_identity("https://other.example", "x", pat, t(3))
        .await
        .unwrap();
    assert_eq!(
        s.user_for_identity("https://other.example", "x")
            .await
            .unwrap()
            .id,
        pat
    );
}

async fn linking_to_an_unknown_user_is_an_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .link_identity(ISSUER, "sub", Uuid::new_v4(), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn a_sign_in_refreshes_the_accounts_email_and_name_but_not_onto_anothers_email(s: Arc<dyn Store>) {
    let pat = user(&*s, "pat@example.com", Role::User).await;
    user(&*s, "taken@example.com", Role::User).await;
    s.link_identity(ISSUER, "sub-pat", pat, t(1)).await.unwrap();
    let updated = s
        .record_identity_sign_in(
            ISSUER,
            "sub-pat",
            "Pat.Smith@Example.com",
            Some("Pat Smith"),
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(updated.id, pat);
    assert_eq!(updated.email, "Pat.Smith@Example.com");
    assert_eq!(updated.display_name.as_deref(), Some("Pat Smith"));
    assert_eq!(s.get_user(pat).await.unwrap(), updated);
    // The new address is looked up regardless of case, like every email.
    let by_email = s.get_credentials_by_email("pat.smith@example.com").await.unwrap();
    assert_eq!(by_email.user.id, pat);

    let err = s
        .record_identity_sign_in(ISSUER, "sub-pat", "TAKEN@example.com", None, t(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.get_user(pat).await.unwrap(), updated, "nothing changed");
    let unknown = s
        .record_identity_sign_in(ISSUER, "nobody", "n@example.com", None, t(3))
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound), "{unknown:?}");
}

async fn a_password_less_account_has_no_password_hash(s: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    let created = s
        .create_user(
            id,
            NewUser {
                email: "oidc@example.com".into(),
                password_hash: None,
                role: Role::User,
                display_name: Some("Oi Dee".into()),
            },
            t(0),
        )
        .await
        .unwrap();
    assert_eq!(created.display_name.as_deref(), Some("Oi Dee"));
    assert!(!created.disabled);
    let credentials = s.get_credentials_by_email("oidc@example.com").await.unwrap();
    assert_eq!(credentials.password_hash, None);
    assert_eq!(credentials.user, created);
}

fn flow(state_hash: &str, expires_at: DateTime<Utc>) -> SignInFlowRecord {
    SignInFlowRecord {
        state_hash: state_hash.into(),
        binding_hash: format!("binding-of-{state_hash}"),
        next_path: "/kb?x=1".into(),
        created_at: t(0),
        expires_at,
    }
}

async fn a_sign_in_flow_is_taken_once_and_not_after_it_expires(s: Arc<dyn Store>) {
    s.create_sign_in_flow(flow("a", t(600))).await.unwrap();
    let err = s.create_sign_in_flow(flow("a", t(600))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let (first, second) = tokio::join!(s.take_sign_in_flow("a", t(1)), s.take_sign_in_flow("a", t(1)));
    let taken: Vec<_> = [first, second].into_iter().filter_map(Result::ok).collect();
    assert_eq!(
        taken,
        vec![flow("a", t(600))],
        "exactly one callback gets the flow"
    );

    s.create_sign_in_flow(flow("b", t(600))).await.unwrap();
    assert!(matches!(
        s.take_sign_in_flow("b", t(600)).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        matches!(s.take_sign_in_flow("b", t(1)).await, Err(StoreError::NotFound)),
        "an expired flow is gone once looked at"
    );
}

async fn expired_sign_in_flows_are_purged_and_live_ones_kept(s: Arc<dyn Store>) {
    s.create_sign_in_flow(flow("old", t(10))).await.unwrap();
    s.create_sign_in_flow(flow("live", t(600))).await.unwrap();
    assert_eq!(s.delete_expired_sign_in_flows(t(10)).await.unwrap(), 1);
    assert_eq!(s.delete_expired_sign_in_flows(t(10)).await.unwrap(), 0);
    assert!(s.take_sign_in_flow("live", t(11)).await.is_ok());
}
