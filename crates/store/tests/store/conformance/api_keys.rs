//! API keys: stored by hash, listed per account and all together, revoked by their owner or by
//! anyone, refused when expired or when their account is disabled, and their use recorded sparingly.

use super::*;
use kbsync_core::ApiKeyScope;
use kbsync_store::{AccountChange, NewApiKey};

kbsync_kit::on_both_databases!(
    api_key_round_trips_and_resolves_to_its_account_by_hash,
    api_keys_list_newest_first_per_account_and_all_with_their_owners,
    an_api_key_for_an_unknown_account_is_invalid_reference,
    deleting_an_api_key_checks_its_owner_and_then_it_no_longer_resolves,
    an_expired_api_key_no_longer_resolves,
    an_api_key_of_a_disabled_account_resolves_again_once_re_enabled,
    api_key_use_is_recorded_at_most_once_per_interval,
    api_keys_go_with_their_account,
);

fn new_key(user_id: UserId, name: &str, hash: &str, expires_at: Option<DateTime<Utc>>) -> NewApiKey {
    NewApiKey {
        user_id,
        name: name.into(),
        scope: ApiKeyScope::Read,
        key_hash: hash.into(),
        prefix: format!("kbs_{}", hash.chars().take(4).collect::<String>()),
        expires_at,
    }
}

async fn api_key_round_trips_and_resolves_to_its_account_by_hash(s: Arc<dyn Store>) {
    let u = user(s.as_ref(), "keys@example.com", Role::User).await;
    let id = Uuid::new_v4();
    let created = s
        .create_api_key(id, new_key(u, "script", "hash-a", Some(t(3600))), t(0))
        .await
        .unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.user_id, u);
    assert_eq!(created.name, "script");
    assert_eq!(created.scope, ApiKeyScope::Read);
    assert_eq!(created.prefix, "kbs_hash");
    assert_eq!(created.created_at, t(0));
    assert_eq!(created.expires_at, Some(t(3600)));
    assert_eq!(created.last_used_at, None);

    let found = s.api_key_user("hash-a", t(10)).await.unwrap();
    assert_eq!(found.key, created);
    assert_eq!(found.owner.id, u);
    assert_eq!(found.owner.email, "keys@example.com");
    assert!(matches!(
        s.api_key_user("hash-b", t(10)).await.unwrap_err(),
        StoreError::NotFound
    ));
}

async fn api_keys_list_newest_first_per_account_and_all_with_their_owners(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    let b = user(s.as_ref(), "b@example.com", Role::User).await;
    let k1 = Uuid::new_v4();
    let k2 = Uuid::new_v4();
    let k3 = Uuid::new_v4();
    s.create_api_key(k1, new_key(a, "one", "h1", None), t(1))
        .await
        .unwrap();
    s.create_api_key(k2, new_key(b, "two", "h2", None), t(2))
        .await
        .unwrap();
    s.create_api_key(k3, new_key(a, "three", "h3", None), t(3))
        .await
        .unwrap();

    let of_a: Vec<Uuid> = s.list_api_keys(a).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(of_a, vec![k3, k1]);
    let of_b: Vec<Uuid> = s.list_api_keys(b).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(of_b, vec![k2]);
    let all: Vec<(Uuid, String)> = s
        .list_all_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key.id, k.owner.email))
        .collect();
    assert_eq!(
        all,
        vec![
            (k3, "a@example.com".to_owned()),
            (k2, "b@example.com".to_owned()),
            (k1, "a@example.com".to_owned()),
        ]
    );
}

async fn an_api_key_for_an_unknown_account_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_api_key(Uuid::new_v4(), new_key(Uuid::new_v4(), "x", "hx", None), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn deleting_an_api_key_checks_its_owner_and_then_it_no_longer_resolves(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    let b = user(s.as_ref(), "b@example.com", Role::User).await;
    let k = Uuid::new_v4();
    s.create_api_key(k, new_key(a, "one", "h1", None), t(0))
        .await
        .unwrap();

    let err = s.delete_api_key(k, Some(b)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(s.api_key_user("h1", t(1)).await.is_ok());

    s.delete_api_key(k, Some(a)).await.unwrap();
    assert!(matches!(
        s.api_key_user("h1", t(1)).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        s.delete_api_key(k, None).await.unwrap_err(),
        StoreError::NotFound
    ));

    // Without an owner (an administrator), any key goes.
    let k2 = Uuid::new_v4();
    s.create_api_key(k2, new_key(b, "two", "h2", None), t(0))
        .await
        .unwrap();
    s.delete_api_key(k2, None).await.unwrap();
    assert!(s.list_api_keys(b).await.unwrap().is_empty());
}

async fn an_expired_api_key_no_longer_resolves(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    s.create_api_key(Uuid::new_v4(), new_key(a, "one", "h1", Some(t(60))), t(0))
        .await
        .unwrap();
    assert!(s.api_key_user("h1", t(59)).await.is_ok());
    assert!(matches!(
        s.api_key_user("h1", t(60)).await.unwrap_err(),
        StoreError::NotFound
    ));
}

async fn an_api_key_of_a_disabled_account_resolves_again_once_re_enabled(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    s.create_api_key(Uuid::new_v4(), new_key(a, "one", "h1", None), t(0))
        .await
        .unwrap();
    let disable = AccountChange {
        disabled: Some(true),
        ..AccountChange::default()
    };
    s.change_account(a, disable, t(1)).await.unwrap();
    assert!(matches!(
        s.api_key_user("h1", t(2)).await.unwrap_err(),
        StoreError::NotFound
    ));
    let enable = AccountChange {
        disabled: Some(false),
        ..AccountChange::default()
    };
    s.change_account(a, enable, t(3)).await.unwrap();
    assert!(s.api_key_user("h1", t(4)).await.is_ok());
}

async fn api_key_use_is_recorded_at_most_once_per_interval(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    let k = Uuid::new_v4();
    s.create_api_key(k, new_key(a, "one", "h1", None), t(0))
        .await
        .unwrap();
    assert!(s.record_api_key_use(k, t(100), t(40)).await.unwrap());
    // A use within the interval of the recorded one changes nothing.
    assert!(!s.record_api_key_use(k, t(130), t(70)).await.unwrap());
    let key = s.api_key_user("h1", t(131)).await.unwrap().key;
    assert_eq!(key.last_used_at, Some(t(100)));
    assert!(s.record_api_key_use(k, t(200), t(140)).await.unwrap());
    assert_eq!(s.list_api_keys(a).await.unwrap()[0].last_used_at, Some(t(200)));
}

async fn api_keys_go_with_their_account(s: Arc<dyn Store>) {
    let _admin = user(s.as_ref(), "admin@example.com", Role::Admin).await;
    let a = user(s.as_ref(), "a@example.com", Role::User).await;
    s.create_api_key(Uuid::new_v4(), new_key(a, "one", "h1", None), t(0))
        .await
        .unwrap();
    s.delete_account(a, None).await.unwrap();
    assert!(s.list_all_api_keys().await.unwrap().is_empty());
    assert!(matches!(
        s.api_key_user("h1", t(1)).await.unwrap_err(),
        StoreError::NotFound
    ));
}
