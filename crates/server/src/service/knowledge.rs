//! Knowledge bases and who may do what with them.

use kbsync_core::{Access, KbId, KbType, KnowledgeBase, Permission, User, UserId};
use kbsync_store::{KbPatch, NewKnowledgeBase, PageOf, Reader, StoreError};

use super::{optional_text, required_text};
use crate::{AppState, error::ApiError};

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 4000;

/// A knowledge base together with what the caller may do with it.
pub struct KbView {
    pub kb: KnowledgeBase,
    pub access: Access,
}

/// Loads a knowledge base the caller may see at all: one they may read as a whole, or one some of
/// whose documents' access lists name them (`Access::Documents`: only those documents are
/// theirs). Anything else is "not found", so that strangers learn nothing about its existence.
pub async fn visible(state: &AppState, user: &User, id: KbId) -> Result<KbView, ApiError> {
    let kb = match state.store.get_kb(id).await {
        Ok(kb) => kb,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("knowledge base")),
        Err(e) => return Err(e.into()),
    };
    let access = access_to(state, user, &kb).await?;
    if !access.can_see() {
        return Err(ApiError::NotFound("knowledge base"));
    }
    Ok(KbView { kb, access })
}

/// What the user may do with the knowledge base: ownership, role and manual grants, else the
/// documents whose access lists name them.
async fn access_to(state: &AppState, user: &User, kb: &KnowledgeBase) -> Result<Access, ApiError> {
    let grant = if user.is_admin() || kb.owner_id == user.id {
        None
    } else {
        state.store.strongest_grant(kb.id, user.id).await?
    };
    let access = Access::resolve(user, kb, grant);
    if access == Access::None && state.store.reads_documents_of(kb.id, user.id).await? {
        return Ok(Access::Documents);
    }
    Ok(access)
}

/// Loads a knowledge base the caller may read as a whole (its sources, runs and connection too).
/// A caller who sees only some of its documents is told so (403); a stranger gets "not found".
pub async fn readable(state: &AppState, user: &User, id: KbId) -> Result<KbView, ApiError> {
    let view = visible(state, user, id).await?;
    if !view.access.can_read() {
        return Err(ApiError::Forbidden(
            "you may read some documents of this knowledge base, not all of it".into(),
        ));
    }
    Ok(view)
}

/// Loads a knowledge base the caller may add and remove documents in.
pub async fn writable(state: &AppState, user: &User, id: KbId) -> Result<KbView, ApiError> {
    let view = readable(state, user, id).await?;
    if !view.access.can_write() {
        return Err(ApiError::Forbidden(
            "you may read this knowledge base but not change its files".into(),
        ));
    }
    Ok(view)
}

/// Loads a knowledge base the caller may change, share and delete.
pub async fn manageable(state: &AppState, user: &User, id: KbId) -> Result<KbView, ApiError> {
    let view = readable(state, user, id).await?;
    if !view.access.can_manage() {
        return Err(ApiError::Forbidden(
            "only the owner or an admin may change this knowledge base".into(),
        ));
    }
    Ok(view)
}

pub async fn create(
    state: &AppState,
    user: &User,
    name: &str,
    description: Option<&str>,
    kb_type: Option<&str>,
) -> Result<KbView, ApiError> {
    let name = required_text("name", name, MAX_NAME_CHARS)?;
    let description = optional_text(
        "description",
        description.unwrap_or_default(),
        MAX_DESCRIPTION_CHARS,
    )?;
    let kb_type = match kb_type {
        None => KbType::Local,
        Some(t) => t
            .parse::<KbType>()
            .map_err(|e| ApiError::invalid("type", e.to_string()))?,
    };
    if let Some(kind) = kbsync_core::datasource::DatasourceKind::of(kb_type) {
        let configured = state.datasources.datasource(kind).is_some();
        if !configured {
            return Err(ApiError::invalid(
                "type",
                format!("the {kb_type} datasource is not configured on this server"),
            ));
        }
    }
    let kb = state
        .store
        .create_kb(
            state.random.uuid(),
            NewKnowledgeBase {
                name,
                description,
                owner_id: user.id,
                kb_type,
            },
            state.clock.now(),
        )
        .await?;
    Ok(KbView {
        kb,
        access: Access::Manage,
    })
}

pub async fn list(
    state: &AppState,
    user: &User,
    page: kbsync_store::Page,
) -> Result<PageOf<KbView>, ApiError> {
    let found = state.store.list_readable_kbs(Reader::of(user), page).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for kb in found.items {
        let access = access_to(state, user, &kb).await?;
        items.push(KbView { kb, access });
    }
    Ok(PageOf {
        items,
        total: found.total,
    })
}

pub async fn update(
    state: &AppState,
    user: &User,
    id: KbId,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<KbView, ApiError> {
    manageable(state, user, id).await?;
    let patch = KbPatch {
        name: name
            .map(|n| required_text("name", n, MAX_NAME_CHARS))
            .transpose()?,
        description: description
            .map(|d| optional_text("description", d, MAX_DESCRIPTION_CHARS))
            .transpose()?,
    };
    let kb = state.store.update_kb(id, patch, state.clock.now()).await?;
    Ok(KbView {
        kb,
        access: Access::Manage,
    })
}

/// The longest interval a knowledge base may set between scheduled syncs (a week).
pub const MAX_SYNC_INTERVAL_MINUTES: u32 = 7 * 24 * 60;

/// What `PATCH /knowledge/{id}` may change.
#[derive(Default)]
pub struct KbChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    /// `Some(None)` goes back to the server's default interval.
    pub sync_interval_minutes: Option<Option<u32>>,
}

/// Validates everything first, then applies name, description and the sync interval.
pub async fn patch(
    state: &AppState,
    user: &User,
    id: KbId,
    changes: KbChanges<'_>,
) -> Result<KbView, ApiError> {
    let view = manageable(state, user, id).await?;
    if let Some(interval) = changes.sync_interval_minutes {
        if view.kb.kb_type == KbType::Local {
            return Err(ApiError::Conflict(
                "local knowledge bases do not sync; only datasource knowledge bases have an interval".into(),
            ));
        }
        if let Some(minutes) = interval
            && !(1..=MAX_SYNC_INTERVAL_MINUTES).contains(&minutes)
        {
            return Err(ApiError::invalid(
                "sync_interval_minutes",
                format!(
                    "must be between 1 and {MAX_SYNC_INTERVAL_MINUTES}, or null for the server's default"
                ),
            ));
        }
    }
    let updated = update(state, user, id, changes.name, changes.description).await?;
    if let Some(interval) = changes.sync_interval_minutes {
        state.store.set_sync_interval(id, interval).await?;
    }
    Ok(updated)
}

pub async fn delete(state: &AppState, user: &User, id: KbId) -> Result<(), ApiError> {
    manageable(state, user, id).await?;
    // Its blobs are collected later, if no document references them then (docs/storage.md).
    state.store.delete_kb(id, state.clock.now()).await?;
    Ok(())
}

/// The manual grants, split by permission.
pub struct AccessLists {
    pub read: Vec<UserId>,
    pub write: Vec<UserId>,
}

pub async fn get_access(state: &AppState, user: &User, id: KbId) -> Result<AccessLists, ApiError> {
    manageable(state, user, id).await?;
    let grants = state.store.list_grants(id).await?;
    let mut lists = AccessLists {
        read: Vec::new(),
        write: Vec::new(),
    };
    for g in grants
        .into_iter()
        .filter(|g| g.origin == kbsync_core::GrantOrigin::Manual)
    {
        match g.permission {
            Permission::Read => lists.read.push(g.user_id),
            Permission::Write => lists.write.push(g.user_id),
        }
    }
    lists.read.sort();
    lists.write.sort();
    Ok(lists)
}

pub async fn set_access(
    state: &AppState,
    user: &User,
    id: KbId,
    read: &[UserId],
    write: &[UserId],
) -> Result<AccessLists, ApiError> {
    manageable(state, user, id).await?;
    match state.store.set_manual_grants(id, read, write).await {
        Ok(()) => {}
        Err(StoreError::InvalidReference(_)) => {
            return Err(ApiError::invalid(
                "read/write",
                "every entry must be the id of an existing user",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    get_access(state, user, id).await
}
