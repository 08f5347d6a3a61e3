//! Inputs and outputs of the [`Store`](crate::Store) that are not domain types.

use chrono::{DateTime, Utc};
use kbsync_core::{KbId, KbType, Role, User, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    /// An argon2 PHC string; the store never sees a password.
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginFailures {
    pub count: u32,
    pub last_failure_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewKnowledgeBase {
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub kb_type: KbType,
}

/// Fields of a knowledge base that can change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KbPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kb_id: KbId,
    pub name: String,
    pub path: String,
    pub mime: String,
    pub size: i64,
    pub content_hash: String,
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
}

/// Who is asking, for access filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Reads everything.
    Admin,
    /// Reads what it owns or holds a grant on.
    User(UserId),
}

impl Reader {
    pub fn of(user: &User) -> Reader {
        if user.is_admin() {
            Reader::Admin
        } else {
            Reader::User(user.id)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageOf<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub text: &'a str,
    pub reader: Reader,
    /// Restrict to these knowledge bases (still filtered by access); empty means all readable.
    pub kb_ids: &'a [KbId],
    pub limit: u32,
}
