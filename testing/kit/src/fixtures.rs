//! Users and knowledge bases made directly in a store.

use chrono::{DateTime, Utc};
use kbsync_core::{KbId, KbType, Role, UserId};
use kbsync_store::{NewKnowledgeBase, NewUser, Store};
use uuid::Uuid;

/// A password hash for users made directly in a store (no test logs in with it).
pub const PASSWORD_HASH: &str = "$argon2id$x";

/// A new user with `role`, e-mail `<id>@example.com`.
pub async fn user(store: &dyn Store, role: Role, at: DateTime<Utc>) -> UserId {
    let id = Uuid::new_v4();
    store
        .create_user(
            id,
            NewUser {
                email: format!("{id}@example.com"),
                password_hash: PASSWORD_HASH.into(),
                role,
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
