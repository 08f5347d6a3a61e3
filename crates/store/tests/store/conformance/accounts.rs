//! Account administration: listing with how accounts sign in, role and disabled changes guarded so
//! an enabled admin always remains, password changes that end sessions, service accounts, and
//! deleting an account with or without handing its knowledge bases over.

use super::*;
use kbsync_core::UserKind;
use kbsync_store::{AccountChange, LAST_ADMIN, STILL_OWNS_KNOWLEDGE_BASES};

kbsync_kit::on_both_databases!(
    accounts_list_by_email_with_how_they_sign_in,
    service_accounts_have_no_password_and_their_own_kind,
    role_changes_take_effect_and_the_last_enabled_admin_stays,
    disabling_ends_sessions_and_re_enabling_restores_the_account,
    racing_demotions_of_the_last_two_admins_leave_one,
    a_new_password_ends_every_session_but_the_kept_one,
    deleting_an_account_hands_its_knowledge_bases_over_or_needs_them_gone,
    deleting_removes_grants_sessions_and_identities,
    changes_to_unknown_accounts_are_not_found,
);

fn role(role: Role) -> AccountChange {
    AccountChange {
        role: Some(role),
        ..AccountChange::default()
    }
}

fn disabled(yes: bool) -> AccountChange {
    AccountChange {
        disabled: Some(yes),
        ..AccountChange::default()
    }
}

fn conflict_message(err: StoreError) -> String {
    match err {
        StoreError::Conflict(m) => m,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn accounts_list_by_email_with_how_they_sign_in(s: Arc<dyn Store>) {
    let b = user(s.as_ref(), "b@example.com", Role::User).await;
    let a = user(s.as_ref(), "A@example.com", Role::Admin).await;
    s.link_identity("https://idp.example", "sub-1", b, t(1))
        .await
        .unwrap();
    let svc = s
        .create_service_account(Uuid::new_v4(), "svc@kbsync.invalid", "Assistant", t(2))
        .await
        .unwrap();

    let listed = s.list_accounts(Page { limit: 10, offset: 0 }).await.unwrap();
    assert_eq!(listed.total, 3);
    let rows: Vec<(UserId, bool, bool)> = listed
        .items
        .iter()
        .map(|a| (a.user.id, a.has_password, a.has_provider_identity))
        .collect();
    assert_eq!(
        rows,
        vec![(a, true, false), (b, true, true), (svc.id, false, false)]
    );

    let second = s.list_accounts(Page { limit: 1, offset: 1 }).await.unwrap();
    assert_eq!(second.total, 3);
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].user.id, b);

    let one = s.get_account(svc.id).await.unwrap();
    assert_eq!(one.user.kind, UserKind::Service);
    assert_eq!(one.user.display_name.as_deref(), Some("Assistant"));
}

async fn service_accounts_have_no_password_and_their_own_kind(s: Arc<dyn Store>) {
    let svc = s
        .create_service_account(Uuid::new_v4(), "svc@kbsync.invalid", "Assistant", t(0))
        .await
        .unwrap();
    assert_eq!(svc.kind, UserKind::Service);
    assert_eq!(svc.role, Role::User);
    assert_eq!(s.get_user(svc.id).await.unwrap(), svc);
    let creds = s.get_credentials_by_email("svc@kbsync.invalid").await.unwrap();
    assert_eq!(creds.password_hash, None);
    assert_eq!(creds.user.kind, UserKind::Service);
    let person = user(s.as_ref(), "p@example.com", Role::User).await;
    assert_eq!(s.get_user(person).await.unwrap().kind, UserKind::Person);

    let err = s
        .create_service_account(Uuid::new_v4(), "SVC@kbsync.invalid", "Again", t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn role_changes_take_effect_and_the_last_enabled_admin_stays(s: Arc<dyn Store>) {
    let admin = user(s.as_ref(), "admin@example.com", Role::Admin).await;
    let other = user(s.as_ref(), "other@example.com", Role::User).await;

    let err = s.change_account(admin, role(Role::User), t(1)).await.unwrap_err();
    assert_eq!(conflict_message(err), LAST_ADMIN);
    let err = s.change_account(admin, disabled(true), t(1)).await.unwrap_err();
    assert_eq!(conflict_message(err), LAST_ADMIN);
    let err = s.delete_account(admin, None).await.unwrap_err();
    assert_eq!(conflict_message(err), LAST_ADMIN);
    assert!(s.get_user(admin).await.unwrap().is_admin());

    let promoted = s.change_account(other, role(Role::Admin), t(2)).await.unwrap();
    assert!(promoted.is_admin());
    let demoted = s.change_account(admin, role(Role::User), t(3)).await.unwrap();
    assert_eq!(demoted.role, Role::User);
    assert!(!s.get_user(admin).await.unwrap().is_admin());

    // A disabled admin does not count as the one that remains.
    let again = s.change_account(admin, role(Role::Admin), t(4)).await.unwrap();
    assert!(again.is_admin());
    s.change_account(admin, disabled(true), t(5)).await.unwrap();
    let err = s.change_account(other, role(Role::User), t(6)).await.unwrap_err();
    assert_eq!(conflict_message(err), LAST_ADMIN);
    // Changing a non-admin (or keeping an admin) needs no other admin.
    s.change_account(other, role(Role::Admin), t(7)).await.unwrap();
}

async fn disabling_ends_sessions_and_re_enabling_restores_the_account(s: Arc<dyn Store>) {
    let _admin = user(s.as_ref(), "admin@example.com", Role::Admin).await;
    let u = user(s.as_ref(), "u@example.com", Role::User).await;
    s.create_session("s1", u, t(0), t(3600)).await.unwrap();

    let off = s.change_account(u, disabled(true), t(1)).await.unwrap();
    assert!(off.disabled);
    assert!(s.get_user(u).await.unwrap().disabled);
    assert!(matches!(
        s.user_for_session("s1", t(2)).await.unwrap_err(),
        StoreError::NotFound
    ));

    let on = s.change_account(u, disabled(false), t(3)).await.unwrap();
    assert!(!on.disabled);
    // The sessions ended with the disabling; new ones work.
    assert!(s.user_for_session("s1", t(4)).await.is_err());
    s.create_session("s2", u, t(4), t(3600)).await.unwrap();
    assert_eq!(s.user_for_session("s2", t(5)).await.unwrap().id, u);
}

async fn racing_demotions_of_the_last_two_admins_leave_one(s: Arc<dyn Store>) {
    let a = user(s.as_ref(), "a@example.com", Role::Admin).await;
    let b = user(s.as_ref(), "b@example.com", Role::Admin).await;
    let (ra, rb) = tokio::join!(
        s.change_account(a, role(Role::User), t(1)),
        s.change_account(b, disabled(true), t(1)),
    );
    let succeeded = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(succeeded, 1, "{ra:?} {rb:?}");
    let enabled_admins = [a, b].len()
        - usize::from(!s.get_user(a).await.unwrap().is_admin())
        - usize::from(s.get_user(b).await.unwrap().disabled);
    assert_eq!(enabled_admins, 1);
}

async fn a_new_password_ends_every_session_but_the_kept_one(s: Arc<dyn Store>) {
    let u = user(s.as_ref(), "u@example.com", Role::User).await;
    let other = user(s.as_ref(), "o@example.com", Role::User).await;
    for (token, who) in [("s1", u), ("s2", u), ("s3", u), ("o1", other)] {
        s.create_session(token, who, t(0), t(3600)).await.unwrap();
    }
    s.set_password_hash(u, "$argon2id$new", Some("s2")).await.unwrap();
    assert_eq!(
        s.get_credentials_by_email("u@example.com")
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    assert!(s.user_for_session("s1", t(1)).await.is_err());
    assert!(s.user_for_session("s3", t(1)).await.is_err());
    assert_eq!(s.user_for_session("s2", t(1)).await.unwrap().id, u);
    assert_eq!(s.user_for_session("o1", t(1)).await.unwrap().id, other);

    s.set_password_hash(u, "$argon2id$newer", None).await.unwrap();
    assert!(s.user_for_session("s2", t(1)).await.is_err());
}

async fn deleting_an_account_hands_its_knowledge_bases_over_or_needs_them_gone(s: Arc<dyn Store>) {
    let _admin = user(s.as_ref(), "admin@example.com", Role::Admin).await;
    let leaver = user(s.as_ref(), "leaver@example.com", Role::User).await;
    let heir = user(s.as_ref(), "heir@example.com", Role::User).await;
    let k1 = kb_at(s.as_ref(), leaver, "one", t(1)).await;
    let k2 = kb_at(s.as_ref(), leaver, "two", t(2)).await;
    let theirs = kb(s.as_ref(), heir, "theirs").await;
    assert_eq!(s.owned_kbs(leaver).await.unwrap(), vec![k1, k2]);

    let err = s.delete_account(leaver, None).await.unwrap_err();
    assert_eq!(conflict_message(err), STILL_OWNS_KNOWLEDGE_BASES);
    let err = s.delete_account(leaver, Some(Uuid::new_v4())).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    let err = s.delete_account(leaver, Some(leaver)).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    let svc = s
        .create_service_account(Uuid::new_v4(), "svc@kbsync.invalid", "Assistant", t(0))
        .await
        .unwrap();
    let err = s.delete_account(leaver, Some(svc.id)).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert!(s.get_user(leaver).await.is_ok());

    s.delete_account(leaver, Some(heir)).await.unwrap();
    assert!(matches!(
        s.get_user(leaver).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert_eq!(s.get_kb(k1).await.unwrap().owner_id, heir);
    assert_eq!(s.get_kb(k2).await.unwrap().owner_id, heir);
    assert_eq!(s.owned_kbs(heir).await.unwrap().len(), 3);
    assert_eq!(s.get_kb(theirs).await.unwrap().owner_id, heir);

    // Without knowledge bases, no heir is needed.
    let empty = user(s.as_ref(), "empty@example.com", Role::User).await;
    s.delete_account(empty, None).await.unwrap();
    assert!(s.get_user(empty).await.is_err());
}

async fn deleting_removes_grants_sessions_and_identities(s: Arc<dyn Store>) {
    let owner = user(s.as_ref(), "owner@example.com", Role::Admin).await;
    let reader = user(s.as_ref(), "reader@example.com", Role::User).await;
    let k = kb(s.as_ref(), owner, "shared").await;
    s.set_manual_grants(k, &[reader], &[]).await.unwrap();
    s.create_session("r1", reader, t(0), t(3600)).await.unwrap();
    s.link_identity("https://idp.example", "sub-r", reader, t(0))
        .await
        .unwrap();

    s.delete_account(reader, None).await.unwrap();
    assert!(s.list_grants(k).await.unwrap().is_empty());
    assert!(s.user_for_session("r1", t(1)).await.is_err());
    assert!(matches!(
        s.user_for_identity("https://idp.example", "sub-r")
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
    // The identity may now be linked to another account.
    s.link_identity("https://idp.example", "sub-r", owner, t(2))
        .await
        .unwrap();
}

async fn changes_to_unknown_accounts_are_not_found(s: Arc<dyn Store>) {
    let ghost = Uuid::new_v4();
    assert!(matches!(
        s.change_account(ghost, role(Role::Admin), t(0))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        s.set_password_hash(ghost, "x", None).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        s.delete_account(ghost, None).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        s.get_account(ghost).await.unwrap_err(),
        StoreError::NotFound
    ));
}
