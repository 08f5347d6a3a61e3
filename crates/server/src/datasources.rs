//! [`Datasources`]: the datasources this server can connect to and the OAuth connection manager
//! that holds knowledge bases' connections. The sync runner reaches both through them (as its
//! [`DatasourceResolver`]), so it never reads or writes the connection tables itself.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{
    KbId,
    datasource::{Datasource, DatasourceKind},
};
use kbsync_oauth::ConnectionManager;
use kbsync_sync::runner::{DatasourceResolver, ResolveError, StoredTokens};

/// The datasources this server can connect to, and the connections of knowledge bases.
#[derive(Clone)]
pub struct Datasources {
    pub manager: ConnectionManager,
    by_kind: Arc<HashMap<DatasourceKind, Arc<dyn Datasource>>>,
}

impl Datasources {
    pub fn new(manager: ConnectionManager, datasources: Vec<Arc<dyn Datasource>>) -> Self {
        let datasources = datasources.into_iter().map(|d| (d.kind(), d)).collect();
        Self {
            manager,
            by_kind: Arc::new(datasources),
        }
    }

    /// The datasource of a kind, when this server has one.
    pub fn datasource(&self, kind: DatasourceKind) -> Option<&Arc<dyn Datasource>> {
        self.by_kind.get(&kind)
    }
}

#[async_trait]
impl DatasourceResolver for Datasources {
    fn datasource(&self, kind: DatasourceKind) -> Option<Arc<dyn Datasource>> {
        Datasources::datasource(self, kind).cloned()
    }

    async fn tokens(&self, kb_id: KbId) -> Result<StoredTokens, ResolveError> {
        match self.manager.status(kb_id).await {
            Ok(None) => Err(ResolveError::NotConnected),
            Ok(Some(s)) if s.needs_reauth => Err(ResolveError::NeedsReauth),
            Ok(Some(s)) => match s.token_stored_at {
                Some(stored_at) => Ok(StoredTokens {
                    // An app-only connection syncs with the application's own tokens.
                    source: self
                        .manager
                        .token_source(kb_id, &s)
                        .map_err(|e| ResolveError::Unavailable(e.to_string()))?,
                    stored_at,
                }),
                None => Err(ResolveError::NotConnected),
            },
            Err(e) => Err(ResolveError::Unavailable(e.to_string())),
        }
    }

    async fn mark_needs_reauth(&self, kb_id: KbId, stored_at: DateTime<Utc>) -> Result<bool, ResolveError> {
        self.manager
            .mark_needs_reauth(kb_id, stored_at)
            .await
            .map_err(|e| ResolveError::Unavailable(e.to_string()))
    }
}
