//! Users, knowledge bases and sources made directly in a store.

use chrono::{DateTime, Utc};
use kbsync_core::SourceKind;
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{KbId, KbType, Role, UserId};
use kbsync_store::{NewKnowledgeBase, NewSource, NewUser, Store};
use uuid::Uuid;

/// A password hash for users made directly in a store (no test logs in with it).
pub const PASSWORD_HASH: &str = "$argon2id$x";

/// A new user with `role`, e-mail `<id>@example.com`.
pub async fn user(store: &dyn Store, role: Role, at: DateTime<Utc>) -> UserId {
    let id = Uuid::new_v4();
    create_user(store, id, format!("{id}@example.com"), role, at).await
}

/// A new user with `email` and `role`, for tests where the address matters (sign-in, sharing).
pub async fn user_with_email(store: &dyn Store, email: &str, role: Role, at: DateTime<Utc>) -> UserId {
    create_user(store, Uuid::new_v4(), email.to_owned(), role, at).await
}

async fn create_user(store: &dyn Store, id: UserId, email: String, role: Role, at: DateTime<Utc>) -> UserId {
    store
        .create_user(
            id,
            NewUser {
                email,
                password_hash: Some(PASSWORD_HASH.into()),
                role,
                display_name: None,
            },
            at,
        )
        .await
        .unwrap();
    id
}

/// A new knowledge base of `owner`, with an empty description.
pub async fn kb(store: &dyn Store, owner: UserId, name: &str, kb_type: KbType, at: DateTime<Utc>) -> KbId {
    let id = Uuid::new_v4();
    store
        .create_kb(
            id,
            NewKnowledgeBase {
                name: name.into(),
                description: String::new(),
                owner_id: owner,
                kb_type,
            },
            at,
        )
        .await
        .unwrap();
    id
}

/// A OneDrive source of `kb_id`: the `kind` item `item_id` at `path` on `drive_id`, named as the
/// last segment of its path (as the picker names it).
pub fn onedrive_source(
    kb_id: KbId,
    kind: SourceKind,
    drive_id: &str,
    item_id: &str,
    path: &str,
) -> NewSource {
    NewSource {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        kind,
        drive_id: drive_id.to_owned(),
        item_id: item_id.to_owned(),
        name: path.rsplit('/').next().unwrap_or(path).to_owned(),
        path: path.to_owned(),
    }
}
