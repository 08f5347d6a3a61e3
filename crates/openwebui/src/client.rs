//! The Open WebUI HTTP client: one place that builds URLs, sends requests with the API key and
//! turns answers into [`OpenWebUiError`]s.
//!
//! Statuses: 401 and 403 are [`OpenWebUiError::Unauthorized`]; 5xx, 408 and 429 (and connection
//! failures) [`OpenWebUiError::Unreachable`]; a knowledge-scoped request answered with Open WebUI's
//! "not found" message (404, or 400 on the routes that use 400 for it) is
//! [`OpenWebUiError::KnowledgeNotFound`]; any other 4xx is [`OpenWebUiError::Rejected`] with
//! Open WebUI's `detail`. Nothing here retries: the caller publishes again later. The API key is
//! never logged, and neither are bodies.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kbsync_core::Clock;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, instrument};
use url::Url;

use crate::config::OpenWebUiConfig;
use crate::errors::OpenWebUiError;
use crate::model::{
    AccessUpdateForm, CreateKnowledgeForm, ErrorBody, GrantWire, KnowledgeFilePage, KnowledgeWire, UserList,
};
use crate::{AccessGrant, Knowledge, KnowledgeGrant, PublishedFile};

/// Open WebUI's `ERROR_MESSAGES.NOT_FOUND`: the `detail` of a missing knowledge base (or file).
pub(crate) const NOT_FOUND_DETAIL: &str = "We could not find what you're looking for :/";
/// Files asked for per page of `GET /knowledge/{id}/files` (admins may choose the page size; others
/// get 30 whatever they ask, which the paging handles too).
pub(crate) const FILES_PAGE_SIZE: usize = 500;

/// What a request is about, which decides what a "not found" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Under `/knowledge/{id}`: not found means the knowledge base is gone.
    Knowledge,
    /// Anything else: not found is a plain rejection.
    Other,
}

/// A client of one Open WebUI deployment. Cheap to share behind an `Arc`; it holds no state
/// between calls.
pub struct OpenWebUiClient {
    pub(crate) config: OpenWebUiConfig,
    http: reqwest::Client,
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OpenWebUiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenWebUiClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenWebUiClient {
    /// A client of the deployment `config` names. `http` carries the timeouts; `clock` decides when
    /// a file's processing has taken too long.
    pub fn new(config: OpenWebUiConfig, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self { config, http, clock }
    }

    pub fn config(&self) -> &OpenWebUiConfig {
        &self.config
    }

    /// Creates a knowledge base owned by the API key's user, readable by nobody else yet.
    #[instrument(skip_all)]
    pub async fn create_knowledge(&self, name: &str, description: &str) -> Result<Knowledge, OpenWebUiError> {
        let form = CreateKnowledgeForm { name, description };
        let k: KnowledgeWire = self
            .json(
                self.request(Method::POST, &["knowledge", "create"])?.json(&form),
                Scope::Other,
            )
            .await?;
        Ok(Knowledge {
            id: k.id,
            name: k.name,
        })
    }

    /// The knowledge base `id`; [`OpenWebUiError::KnowledgeNotFound`] when it is gone.
    #[instrument(skip_all, fields(knowledge.id = %id))]
    pub async fn knowledge(&self, id: &str) -> Result<Knowledge, OpenWebUiError> {
        let k = self.knowledge_wire(id).await?;
        Ok(Knowledge {
            id: k.id,
            name: k.name,
        })
    }

    /// The access grants the knowledge base `id` holds now.
    #[instrument(skip_all, fields(knowledge.id = %id))]
    pub async fn knowledge_grants(&self, id: &str) -> Result<Vec<KnowledgeGrant>, OpenWebUiError> {
        let k = self.knowledge_wire(id).await?;
        let mut grants: Vec<KnowledgeGrant> = k
            .access_grants
            .into_iter()
            .map(|g| KnowledgeGrant {
                principal_type: g.principal_type,
                principal_id: g.principal_id,
                permission: g.permission,
            })
            .collect();
        grants.sort();
        Ok(grants)
    }

    async fn knowledge_wire(&self, id: &str) -> Result<KnowledgeWire, OpenWebUiError> {
        self.json(self.request(Method::GET, &["knowledge", id])?, Scope::Knowledge)
            .await
    }

    /// Open WebUI user ids for these emails (case-insensitive), keyed by the email as given; emails
    /// without an account are absent. Reads `GET /users/all` (admin only) once.
    #[instrument(skip_all, fields(emails = emails.len()))]
    pub async fn users_by_email(&self, emails: &[String]) -> Result<HashMap<String, String>, OpenWebUiError> {
        if emails.is_empty() {
            return Ok(HashMap::new());
        }
        let list: UserList = self
            .json(self.request(Method::GET, &["users", "all"])?, Scope::Other)
            .await?;
        let by_email: HashMap<String, String> = list
            .users
            .into_iter()
            .map(|u| (u.email.to_lowercase(), u.id))
            .collect();
        Ok(emails
            .iter()
            .filter_map(|e| {
                by_email
                    .get(&e.trim().to_lowercase())
                    .map(|id| (e.clone(), id.clone()))
            })
            .collect())
    }

    /// Replaces the knowledge base's grants with exactly these: `read` for each user, nothing else
    /// (never `anyone`, never `write`). An empty list leaves only its owner and Open WebUI's admins.
    #[instrument(skip_all, fields(knowledge.id = %knowledge_id, grants = grants.len()))]
    pub async fn set_access(&self, knowledge_id: &str, grants: &[AccessGrant]) -> Result<(), OpenWebUiError> {
        let mut users: Vec<&str> = grants.iter().map(|g| g.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let form = AccessUpdateForm {
            access_grants: users
                .into_iter()
                .map(|id| GrantWire {
                    principal_type: "user".to_string(),
                    principal_id: id.to_string(),
                    permission: "read".to_string(),
                })
                .collect(),
        };
        self.send(
            self.request(Method::POST, &["knowledge", knowledge_id, "access", "update"])?
                .json(&form),
            Scope::Knowledge,
        )
        .await?;
        Ok(())
    }

    /// What the knowledge base holds now, all pages, sorted by path and name.
    #[instrument(skip_all, fields(knowledge.id = %knowledge_id))]
    pub async fn knowledge_files(&self, knowledge_id: &str) -> Result<Vec<PublishedFile>, OpenWebUiError> {
        let mut files = Vec::new();
        let mut page = 1usize;
        loop {
            let request = self
                .request(Method::GET, &["knowledge", knowledge_id, "files"])?
                .query(&[("page", page.to_string()), ("limit", FILES_PAGE_SIZE.to_string())]);
            let answer: KnowledgeFilePage = self.json(request, Scope::Knowledge).await?;
            let got = answer.items.len();
            files.extend(answer.items.into_iter().map(|f| PublishedFile {
                id: f.id,
                path: f.directory_path,
                filename: f.filename,
                sha256: f.meta.and_then(|m| m.file_hash),
            }));
            if got == 0 || files.len() >= answer.total {
                break;
            }
            page += 1;
        }
        files.sort_by(|a, b| (&a.path, &a.filename, &a.id).cmp(&(&b.path, &b.filename, &b.id)));
        Ok(files)
    }

    /// `{base_url}/api/v1/{segments…}`, each segment percent-encoded as one path segment.
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, OpenWebUiError> {
        let mut url = self.config.base_url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| OpenWebUiError::Rejected {
                status: 0,
                message: format!("the Open WebUI URL {} cannot have a path", self.config.base_url),
            })?;
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        Ok(url)
    }

    /// A request to `/api/v1/{segments…}` carrying the API key.
    pub(crate) fn request(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<RequestBuilder, OpenWebUiError> {
        let url = self.url(segments)?;
        // FastAPI redirects `/files` to `/files/`; the routes kbsync uses end without a slash except
        // the upload, which asks for it itself.
        Ok(self.http.request(method, url).bearer_auth(&self.config.api_key))
    }

    /// Sends `request` and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        scope: Scope,
    ) -> Result<T, OpenWebUiError> {
        let body = self.send(request, scope).await?;
        serde_json::from_slice(&body).map_err(|e| OpenWebUiError::Rejected {
            status: 200,
            message: format!("Open WebUI answered with unexpected JSON: {e}"),
        })
    }

    /// Sends `request`; a 2xx answer's body, or the error its status means.
    pub(crate) async fn send(&self, request: RequestBuilder, scope: Scope) -> Result<Bytes, OpenWebUiError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let path = response.url().path().to_string();
        let body = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = detail_of(&body);
        debug!(%status, path, "Open WebUI refused a request");
        Err(status_error(status, detail, scope))
    }

    /// JSON for a request body (kept here so `publish` builds forms the same way).
    pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, OpenWebUiError> {
        serde_json::to_string(value).map_err(|e| OpenWebUiError::Rejected {
            status: 0,
            message: format!("cannot encode the request: {e}"),
        })
    }
}

fn transport_error(e: reqwest::Error) -> OpenWebUiError {
    let e = e.without_url();
    if e.is_timeout() {
        OpenWebUiError::Timeout(e.to_string())
    } else {
        OpenWebUiError::Unreachable(error_chain(&e))
    }
}

/// The error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Open WebUI's `detail` (a string, or JSON for validation errors), else the body's start.
pub(crate) fn detail_of(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            detail: serde_json::Value::String(s),
        }) => s,
        Ok(ErrorBody { detail }) => detail.to_string(),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
    }
}

pub(crate) fn status_error(status: StatusCode, detail: String, scope: Scope) -> OpenWebUiError {
    let code = status.as_u16();
    match code {
        401 | 403 => OpenWebUiError::Unauthorized(detail),
        404 | 400 if scope == Scope::Knowledge && detail == NOT_FOUND_DETAIL => {
            OpenWebUiError::KnowledgeNotFound
        }
        408 | 429 => OpenWebUiError::Unreachable(format!("{status}: {detail}")),
        _ if status.is_server_error() => OpenWebUiError::Unreachable(format!("{status}: {detail}")),
        _ => OpenWebUiError::Rejected {
            status: code,
            message: detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_caller_does_next() {
        let nf = NOT_FOUND_DETAIL.to_string();
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, "x".into(), Scope::Other),
            OpenWebUiError::Unauthorized("x".into())
        );
        assert_eq!(
            status_error(StatusCode::FORBIDDEN, "x".into(), Scope::Knowledge),
            OpenWebUiError::Unauthorized("x".into())
        );
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, nf.clone(), Scope::Knowledge),
            OpenWebUiError::KnowledgeNotFound
        );
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, nf.clone(), Scope::Knowledge),
            OpenWebUiError::KnowledgeNotFound
        );
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, nf, Scope::Other),
            OpenWebUiError::Rejected { status: 404, .. }
        ));
        assert!(matches!(
            status_error(
                StatusCode::NOT_FOUND,
                "Parent directory not found.".into(),
                Scope::Knowledge
            ),
            OpenWebUiError::Rejected { status: 404, .. }
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, String::new(), Scope::Other),
            OpenWebUiError::Unreachable(_)
        ));
        assert!(matches!(
            status_error(StatusCode::TOO_MANY_REQUESTS, String::new(), Scope::Other),
            OpenWebUiError::Unreachable(_)
        ));
    }

    #[test]
    fn detail_is_read_from_fastapi_error_bodies() {
        assert_eq!(detail_of(br#"{"detail":"Invalid token"}"#), "Invalid token");
        assert_eq!(
            detail_of(br#"{"detail":[{"loc":["body"],"msg":"x"}]}"#),
            r#"[{"loc":["body"],"msg":"x"}]"#
        );
        assert_eq!(detail_of(b"Bad Gateway"), "Bad Gateway");
    }
}
