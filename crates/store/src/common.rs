//! Pieces both SQL backends share: row types and their conversion to domain types, error mapping,
//! and the text handling behind search (query words, diacritic folding, snippets).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{AccessGrant, Document, KnowledgeBase, UnknownVariant, User};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use crate::{
    Backend, Connection, Encrypted, OAuthState, RefreshLease, Result, StoreError, StoredAccessToken,
};

/// Search's match-phase limit: a query that matches more chunks than this ranks only the newest
/// `SEARCH_DEPTH` of them (by chunk id, i.e. the most recently indexed), so its cost stays bounded
/// however large the index grows; a query that matches fewer (the usual case: any word that is
/// not in a large share of all chunks) is ranked exactly. Words that occur in most chunks carry
/// little weight in BM25 anyway; the newest chunks are the ones a sync has just brought in. The
/// size is set by PostgreSQL's cost: ranking a match reads its stored `tsvector` (~5–10 µs on the
/// benchmark machine), so 2,000 matches keep a common word near 15 ms (10,000 took ~130 ms).
pub const SEARCH_DEPTH: i64 = 2_000;

/// Longest snippet returned by search, in characters.
pub(crate) const SNIPPET_MAX_CHARS: usize = 240;

/// At most this many words of a query are used (a pasted page of text is not a useful query).
pub(crate) const MAX_QUERY_WORDS: usize = 32;

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A timestamp as the store keeps it: whole milliseconds.
pub(crate) fn truncate_ms(t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    from_ms(ms(t))
}

pub(crate) fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {v}")))
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("bad uuid {s:?}: {e}")))
}

pub(crate) fn parse_enum<T: FromStr<Err = UnknownVariant>>(s: &str) -> Result<T> {
    s.parse::<T>().map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative count: {v}")))
}

/// Emails are compared and stored for lookup in this form.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

// --- rows ------------------------------------------------------------------------------------

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

impl UserRow {
    pub fn into_user(self) -> Result<User> {
        Ok(User {
            id: parse_uuid(&self.id)?,
            email: self.email,
            role: parse_enum(&self.role)?,
            created_at: from_ms(self.created_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
    pub password_hash: String,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KbRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner_id: String,
    pub kb_type: String,
    pub sync_status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl KbRow {
    pub fn into_kb(self) -> Result<KnowledgeBase> {
        Ok(KnowledgeBase {
            id: parse_uuid(&self.id)?,
            name: self.name,
            description: self.description,
            owner_id: parse_uuid(&self.owner_id)?,
            kb_type: parse_enum(&self.kb_type)?,
            sync_status: parse_enum(&self.sync_status)?,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub kb_id: String,
    pub user_id: String,
    pub permission: String,
    pub origin: String,
}

impl GrantRow {
    pub fn into_grant(self) -> Result<AccessGrant> {
        Ok(AccessGrant {
            kb_id: parse_uuid(&self.kb_id)?,
            user_id: parse_uuid(&self.user_id)?,
            permission: parse_enum(&self.permission)?,
            origin: parse_enum(&self.origin)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DocRow {
    pub id: String,
    pub kb_id: String,
    pub name: String,
    pub path: String,
    pub mime: String,
    pub size: i64,
    pub content_hash: String,
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DocRow {
    pub fn into_document(self) -> Result<Document> {
        Ok(Document {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            name: self.name,
            path: self.path,
            mime: self.mime,
            size: self.size,
            content_hash: self.content_hash,
            source_item_id: self.source_item_id,
            web_url: self.web_url,
            status: parse_enum(&self.status)?,
            error: self.error,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// A datasource kind as stored (its `as_str`).
pub(crate) fn parse_provider(s: &str) -> Result<DatasourceKind> {
    DatasourceKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown datasource {s:?}")))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OAuthStateRow {
    pub kb_id: String,
    pub user_id: String,
    pub provider: String,
    pub code_verifier_ciphertext: String,
    pub code_verifier_key_id: String,
    pub binding_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl OAuthStateRow {
    pub fn into_state(self) -> Result<OAuthState> {
        Ok(OAuthState {
            kb_id: parse_uuid(&self.kb_id)?,
            user_id: parse_uuid(&self.user_id)?,
            provider: parse_provider(&self.provider)?,
            code_verifier: Encrypted {
                ciphertext: self.code_verifier_ciphertext,
                key_id: self.code_verifier_key_id,
            },
            binding_hash: self.binding_hash,
            created_at: from_ms(self.created_at)?,
            expires_at: from_ms(self.expires_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConnectionRow {
    pub kb_id: String,
    pub provider: String,
    pub refresh_token_ciphertext: String,
    pub refresh_token_key_id: String,
    pub access_token_ciphertext: Option<String>,
    pub access_token_key_id: Option<String>,
    pub access_expires_at: Option<i64>,
    pub tenant: Option<String>,
    pub stored_at: i64,
    pub last_refreshed_at: Option<i64>,
    pub needs_reauth: bool,
    pub refresh_lease_owner: Option<String>,
    pub refresh_lease_until: Option<i64>,
}

impl ConnectionRow {
    pub fn into_connection(self) -> Result<Connection> {
        let access_token = match (
            self.access_token_ciphertext,
            self.access_token_key_id,
            self.access_expires_at,
        ) {
            (Some(ciphertext), Some(key_id), Some(expires_at)) => Some(StoredAccessToken {
                token: Encrypted { ciphertext, key_id },
                expires_at: from_ms(expires_at)?,
            }),
            _ => None,
        };
        let refresh_lease = match (self.refresh_lease_owner, self.refresh_lease_until) {
            (Some(owner), Some(until)) => Some(RefreshLease {
                owner,
                until: from_ms(until)?,
            }),
            _ => None,
        };
        Ok(Connection {
            kb_id: parse_uuid(&self.kb_id)?,
            provider: parse_provider(&self.provider)?,
            refresh_token: Encrypted {
                ciphertext: self.refresh_token_ciphertext,
                key_id: self.refresh_token_key_id,
            },
            access_token,
            tenant: self.tenant,
            stored_at: from_ms(self.stored_at)?,
            last_refreshed_at: self.last_refreshed_at.map(from_ms).transpose()?,
            needs_reauth: self.needs_reauth,
            refresh_lease,
        })
    }
}

pub(crate) fn collect<R, T>(rows: Vec<R>, f: impl Fn(R) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(f).collect()
}

// --- errors ----------------------------------------------------------------------------------

/// Maps a sqlx error to what the caller does next.
pub(crate) fn map_sqlx(backend: Backend, err: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(message),
                ErrorKind::ForeignKeyViolation => StoreError::InvalidReference(message),
                _ => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    if is_transient(backend, &code) {
                        StoreError::Unavailable(format!("{message} (code {code})"))
                    } else {
                        StoreError::Database(format!("{message} (code {code})"))
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(err.to_string()),
        sqlx::Error::Migrate(m) => map_migrate(backend, *m),
        other => StoreError::Database(other.to_string()),
    }
}

pub(crate) fn map_migrate(backend: Backend, err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => map_sqlx(backend, e),
        other => StoreError::Database(format!("migration failed: {other}")),
    }
}

/// Errors that mean "the database is busy or gone right now: retry later".
fn is_transient(backend: Backend, code: &str) -> bool {
    match backend {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        Backend::Sqlite => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        // connection exceptions, insufficient resources, operator intervention, serialization
        // failure and deadlock.
        Backend::Postgres => {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
    }
}

// --- search text -----------------------------------------------------------------------------

/// The words of a plain-text query as typed (for FTS5, whose tokenizer folds them itself):
/// maximal runs of letters and digits; everything else separates words. At most
/// [`MAX_QUERY_WORDS`], duplicates removed.
pub(crate) fn raw_query_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
        if out.len() >= MAX_QUERY_WORDS {
            break;
        }
    }
    out
}

/// Folds text for matching: compatibility decomposition, combining marks removed, lower case.
pub(crate) fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The folded words of a text, in order (duplicates kept).
pub(crate) fn folded_words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The folded words of a query: distinct, at most [`MAX_QUERY_WORDS`].
pub(crate) fn folded_query_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in folded_words(text) {
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() >= MAX_QUERY_WORDS {
            break;
        }
    }
    out
}

/// An FTS5 MATCH expression that requires every word, each quoted as a string so that nothing
/// the user typed is read as FTS5 syntax. `None` when the query has no words.
pub(crate) fn fts5_match_expression(text: &str) -> Option<String> {
    let words = raw_query_words(text);
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    Some(quoted.join(" "))
}

/// Whitespace runs become one space; the result is trimmed.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts text to at most `max` characters, at a word boundary where possible, ending with "…"
/// when something was cut.
pub(crate) fn clamp_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match keep.rfind(' ') {
        Some(i) if i > keep.len() / 2 => &keep[..i],
        _ => keep.as_str(),
    };
    format!("{}…", cut.trim_end())
}

/// A plain-text snippet of at most `max` characters around the first word of `text` whose
/// folded form is one of `terms` (the start of the text when none is).
pub(crate) fn snippet_around(text: &str, terms: &[String], max: usize) -> String {
    let clean: Vec<char> = collapse_whitespace(text).chars().collect();
    if clean.len() <= max {
        return clean.into_iter().collect();
    }
    // Find the first matching word (char index of its start).
    let mut hit = None;
    let mut i = 0;
    while i < clean.len() {
        if clean[i].is_alphanumeric() {
            let start = i;
            while i < clean.len() && clean[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = clean[start..i].iter().collect();
            if folded_words(&word).iter().any(|w| terms.contains(w)) {
                hit = Some(start);
                break;
            }
        } else {
            i += 1;
        }
    }
    let hit = hit.unwrap_or(0);
    let budget = max.saturating_sub(2); // room for a leading and a trailing "…"
    let mut start = hit.saturating_sub(budget / 3);
    if start > 0 {
        // begin at a word boundary after `start`, but not past the hit
        if let Some(off) = clean[start..hit].iter().position(|c| *c == ' ') {
            start += off + 1;
        }
    }
    let mut end = (start + budget).min(clean.len());
    if end < clean.len()
        && let Some(off) = clean[start..end].iter().rposition(|c| *c == ' ')
        && start + off > hit
    {
        end = start + off;
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(clean[start..end].iter());
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    if end < clean.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_removes_diacritics_and_case() {
        assert_eq!(fold("Übergabe ÉLAN façade"), "ubergabe elan facade");
        assert_eq!(folded_words("Über-gabe, x2!"), vec!["uber", "gabe", "x2"]);
    }

    #[test]
    fn fts5_expression_quotes_every_word_and_drops_syntax() {
        assert_eq!(
            fts5_match_expression("foo OR \"bar\" NEAR(x* -y)").as_deref(),
            Some("\"foo\" \"OR\" \"bar\" \"NEAR\" \"x\" \"y\"")
        );
        assert_eq!(fts5_match_expression(" \"*- () "), None);
    }

    #[test]
    fn snippet_is_bounded_and_contains_the_match() {
        let text = format!("{} needle {}", "hay ".repeat(200), "stack ".repeat(200));
        let s = snippet_around(&text, &["needle".to_owned()], SNIPPET_MAX_CHARS);
        assert!(s.chars().count() <= SNIPPET_MAX_CHARS, "{}", s.len());
        assert!(s.contains("needle"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert_eq!(snippet_around("short  text\n", &[], 240), "short text");
    }

    #[test]
    fn snippet_finds_folded_matches() {
        let text = format!("{} Übergabe {}", "a ".repeat(300), "b ".repeat(300));
        let s = snippet_around(&text, &["ubergabe".to_owned()], 240);
        assert!(s.contains("Übergabe"), "{s}");
    }

    #[test]
    fn clamp_cuts_at_word_boundary() {
        let s = clamp_chars(&"word ".repeat(100), 240);
        assert!(s.chars().count() <= 240);
        assert!(s.ends_with("word…"), "{s}");
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SourceRow {
    pub id: String,
    pub kb_id: String,
    pub provider: String,
    pub kind: String,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
    pub cursor: Option<String>,
    pub state_files: Option<i64>,
    pub state_pending: Option<i64>,
    pub state_settings: Option<String>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl SourceRow {
    pub fn into_source(self) -> Result<crate::Source> {
        let kind = match self.kind.as_str() {
            "folder" => crate::SourceKind::Folder,
            "file" => crate::SourceKind::File,
            other => return Err(StoreError::Corrupt(format!("unknown source kind {other:?}"))),
        };
        Ok(crate::Source {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            provider: parse_provider(&self.provider)?,
            kind,
            drive_id: self.drive_id,
            item_id: self.item_id,
            name: self.name,
            path: self.path,
            cursor: self.cursor,
            state_files: self.state_files.and_then(|n| u64::try_from(n).ok()),
            state_pending: self.state_pending.and_then(|n| u64::try_from(n).ok()),
            state_settings: self.state_settings,
            revoked_at: self.revoked_at.map(from_ms).transpose()?,
            created_at: from_ms(self.created_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncRunRow {
    pub id: String,
    pub kb_id: String,
    pub run_trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    pub processed: i64,
    pub failed: i64,
    pub deleted: i64,
    pub skipped: i64,
    pub total_found: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncFailureRow {
    pub run_id: String,
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

impl SyncRunRow {
    pub fn into_run(self, failures: Vec<crate::SyncFailure>) -> Result<crate::SyncRun> {
        let trigger = match self.run_trigger.as_str() {
            "manual" => crate::SyncTrigger::Manual,
            "scheduled" => crate::SyncTrigger::Scheduled,
            "webhook" => crate::SyncTrigger::Webhook,
            other => return Err(StoreError::Corrupt(format!("unknown sync trigger {other:?}"))),
        };
        Ok(crate::SyncRun {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            trigger,
            started_at: from_ms(self.started_at)?,
            finished_at: self.finished_at.map(from_ms).transpose()?,
            outcome: crate::SyncRunOutcome {
                status: parse_enum(&self.status)?,
                processed: to_u64(self.processed)?,
                failed: to_u64(self.failed)?,
                deleted: to_u64(self.deleted)?,
                skipped: to_u64(self.skipped)?,
                total_found: to_u64(self.total_found)?,
                failures,
            },
        })
    }
}

/// An `i32` column (INTEGER) read back as a count or a number of minutes.
pub(crate) fn to_u32(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value: {v}")))
}

/// A `u32` as an INTEGER column holds it (saturating: no count or interval comes near).
pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The scheduling, lease and progress columns of a knowledge base (migration 0004).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncStateRow {
    pub id: String,
    pub sync_status: String,
    pub sync_run_id: Option<String>,
    pub sync_current: i64,
    pub sync_total: i64,
    pub sync_file: Option<String>,
    pub sync_error: Option<String>,
    pub last_sync_at: Option<i64>,
    pub next_sync_at: Option<i64>,
    pub sync_interval_minutes: Option<i32>,
    pub sync_failures: i32,
    pub sync_lease_owner: Option<String>,
    pub sync_lease_expires_at: Option<i64>,
    pub sync_cancel_requested: bool,
}

impl SyncStateRow {
    /// `now` decides whether the lease is live (a run is going).
    pub fn into_state(self, now: DateTime<Utc>) -> Result<crate::SyncState> {
        let running = self.sync_lease_owner.is_some()
            && self.sync_lease_expires_at.is_some_and(|until| until > ms(now));
        Ok(crate::SyncState {
            kb_id: parse_uuid(&self.id)?,
            status: parse_enum(&self.sync_status)?,
            progress: crate::SyncProgress {
                run_id: self.sync_run_id.as_deref().map(parse_uuid).transpose()?,
                current: to_u64(self.sync_current)?,
                total: to_u64(self.sync_total)?,
                file: self.sync_file,
            },
            last_error: self.sync_error,
            last_sync_at: self.last_sync_at.map(from_ms).transpose()?,
            next_sync_at: self.next_sync_at.map(from_ms).transpose()?,
            interval_minutes: self.sync_interval_minutes.map(to_u32).transpose()?,
            consecutive_failures: to_u32(self.sync_failures)?,
            running,
            // A flag left behind by a run that died is stale: it only means something while a
            // run holds a live lease (taking the lease clears it).
            cancel_requested: running && self.sync_cancel_requested,
        })
    }
}
