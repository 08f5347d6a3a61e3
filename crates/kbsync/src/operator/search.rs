//! `kbsync search "<query>"`: the API's search, as the operator (every knowledge base) or, with
//! `--as`, as one user (what they may read), for quick checks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use kbsync_core::{KbId, User};
use kbsync_server::AppState;
use kbsync_server::service::search::{DEFAULT_LIMIT, search_as};
use kbsync_store::Reader;

use super::{Exit, Failure, find_kb};

/// What to search and as whom.
pub struct Query<'a> {
    pub text: &'a str,
    /// A knowledge base's id or exact name: search only that one.
    pub kb: Option<&'a str>,
    pub limit: Option<u32>,
    /// Search with this user's access instead of the operator's.
    pub as_email: Option<&'a str>,
}

/// Runs the search and prints one entry per hit: rank, knowledge base, file, snippet.
pub async fn run(state: &AppState, query: Query<'_>) -> anyhow::Result<()> {
    let reader = match query.as_email {
        None => Reader::Admin,
        Some(email) => Reader::of(&user(state, email).await?),
    };
    let kb_ids: Vec<KbId> = match query.kb {
        Some(wanted) => vec![find_kb(state.store.as_ref(), wanted).await?.id],
        None => Vec::new(),
    };
    let hits = search_as(
        state,
        reader,
        query.text,
        &kb_ids,
        Some(query.limit.unwrap_or(DEFAULT_LIMIT)),
    )
    .await?;
    if hits.is_empty() {
        println!("no results");
        return Ok(());
    }
    let mut kb_names: HashMap<KbId, String> = HashMap::new();
    for (rank, hit) in hits.iter().enumerate() {
        if let Entry::Vacant(entry) = kb_names.entry(hit.knowledge_id) {
            entry.insert(match state.store.get_kb(hit.knowledge_id).await {
                Ok(kb) => kb.name,
                Err(_) => hit.knowledge_id.to_string(),
            });
        }
        let kb = kb_names.get(&hit.knowledge_id).map_or("", String::as_str);
        println!("{}. {kb} / {}", rank + 1, hit.name);
        println!("   {}", hit.snippet);
    }
    Ok(())
}

async fn user(state: &AppState, email: &str) -> anyhow::Result<User> {
    let mut found = state.store.users_by_emails(&[email.to_owned()]).await?;
    if found.is_empty() {
        return Err(Failure::new(
            Exit::NotFound,
            format!("--as: no kbsync user has the email {email}"),
        )
        .into());
    }
    let user = found.remove(0);
    if user.disabled {
        anyhow::bail!("--as: the account {} is disabled; it reads nothing", user.email);
    }
    Ok(user)
}
