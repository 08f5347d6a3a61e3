//! The OpenAPI tool server for Open WebUI (and any client of OpenAPI tools): a small spec at a
//! stable URL, and its one operation, `search_knowledge`, which retrieves passages as
//! [`search::retrieve`] does, for the caller or (with a trusted service key) for the user Open
//! WebUI names; see [`crate::auth::ToolCaller`].
//!
//! The spec is served without authentication: it holds nothing but the operation's description,
//! and a tool server registration can then be checked before any key is configured. Open WebUI
//! loads it from `{url}/{path}` (path `api/v1/tools/openapi.json`) and calls the operation at the
//! spec's path under the same URL (`servers` is not used for that), with the configured key as
//! `Authorization: Bearer`, and the arguments the model chose as the JSON body (Open WebUI 0.12:
//! `utils/tools.py`, `get_tool_servers_data`, `convert_openapi_to_tool_payload`,
//! `execute_tool_server`; it reads `description`, falling back to `summary`).

use kbsync_core::{DocumentId, KbId, User};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::search;
use crate::{AppState, error::ApiError};

/// Where the spec is served, below the public URL.
pub const SPEC_PATH: &str = "/api/v1/tools/openapi.json";
/// The operation's path.
pub const SEARCH_KNOWLEDGE_PATH: &str = "/api/v1/tools/search_knowledge";
/// Passages the operation returns unless asked for another number (fewer than retrieve's
/// default: every passage goes into the model's context).
pub const DEFAULT_TOOL_TOP_K: u32 = 5;

/// The operation's arguments, as the model fills them in. Unknown fields are ignored: Open WebUI
/// passes on whatever extra arguments a model invents, and refusing them would fail the tool call.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SearchKnowledgeRequest {
    /// What to look for.
    pub query: String,
    /// Most passages to answer (default 5).
    pub top_k: Option<u32>,
}

/// One passage as the tool answers it: what a model needs to quote and cite it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolPassage {
    pub name: String,
    pub path: String,
    pub web_url: Option<String>,
    pub text: String,
    pub score: f64,
    #[schema(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
    #[schema(value_type = uuid::Uuid)]
    pub document_id: DocumentId,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchKnowledgeResponse {
    pub passages: Vec<ToolPassage>,
}

/// The passages for the request among what `user` may read, in all their knowledge bases.
pub async fn search_knowledge(
    state: &AppState,
    user: &User,
    req: SearchKnowledgeRequest,
) -> Result<SearchKnowledgeResponse, ApiError> {
    let top_k = Some(req.top_k.unwrap_or(DEFAULT_TOOL_TOP_K));
    let passages = search::retrieve(state, user, &req.query, &[], top_k, None)
        .await
        .map_err(|e| match e {
            // The tool's field is `query`, not retrieve's `q`.
            ApiError::Invalid { field: "q", message } => ApiError::Invalid {
                field: "query",
                message,
            },
            other => other,
        })?;
    Ok(SearchKnowledgeResponse {
        passages: passages
            .into_iter()
            .map(|p| ToolPassage {
                name: p.name,
                path: p.path,
                web_url: p.web_url,
                text: p.text,
                score: p.score,
                knowledge_id: p.knowledge_id,
                document_id: p.document_id,
            })
            .collect(),
    })
}

/// The OpenAPI 3.1 document of the tool server. Schemas are written inline (no `$ref`), and the
/// operation has an `operationId`, `summary` and `description`: Open WebUI turns each operation
/// into a function the model may call, named by `operationId` and described by the rest.
pub fn openapi_spec(public_url: &str) -> Value {
    // The datasources from the registry, for the model: "OneDrive / SharePoint and Google Drive".
    let names: Vec<&str> = kbsync_core::datasource::DatasourceKind::ALL
        .iter()
        .map(|k| k.display_name())
        .collect();
    let sources = match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "cloud drives".to_owned(),
    };
    let passage = json!({
        "type": "object",
        "required": ["name", "path", "text", "score", "knowledge_id", "document_id"],
        "properties": {
            "name": {"type": "string", "description": "The document's file name."},
            "path": {"type": "string", "description": "The document's path at its source (its folder and name)."},
            "web_url": {"type": ["string", "null"], "description": "A link that opens the document at its source; cite it."},
            "text": {"type": "string", "description": "The passage: a whole chunk of the document's text."},
            "score": {"type": "number", "description": "Relevance; higher is better, comparable within one answer only."},
            "knowledge_id": {"type": "string", "format": "uuid", "description": "The knowledge base the document belongs to."},
            "document_id": {"type": "string", "format": "uuid", "description": "The document's id in kbsync."}
        }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kbsync knowledge search",
            "version": "1.0.0",
            "description": format!("Searches the documents kbsync keeps in sync from {sources}, \
                returning only what the chatting user may read at the source.")
        },
        "servers": [{"url": public_url.trim_end_matches('/')}],
        "paths": {
            SEARCH_KNOWLEDGE_PATH: {
                "post": {
                    "operationId": "search_knowledge",
                    "summary": "Search the user's documents for passages relevant to a question",
                    "description": format!("Full-text search over the documents (Word, PDF, Excel, PowerPoint, text and \
                        more, synced from {sources}) that the user may read. Returns the most \
                        relevant passages, best first, each with the document's name, path and a web link. \
                        Use it when a question may be answered by the user's or their organisation's \
                        documents; phrase the query with the distinctive words the answer would contain, and \
                        put an exact phrase in double quotes to require it. Quote the passages and cite \
                        their web_url."),
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["query"],
                                    "additionalProperties": false,
                                    "properties": {
                                        "query": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 1000,
                                            "description": "What to look for, in natural language or keywords; \
                                                \"double quotes\" require an exact phrase."
                                        },
                                        "top_k": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": search::MAX_TOP_K,
                                            "default": DEFAULT_TOOL_TOP_K,
                                            "description": "How many passages to return."
                                        }
                                    }
                                }
                            }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "The passages, best first (an empty list when nothing matches).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["passages"],
                                        "properties": {
                                            "passages": {"type": "array", "items": passage}
                                        }
                                    }
                                }
                            }
                        },
                        "422": {"description": "The query is empty or too long, or top_k is out of range."},
                        "401": {"description": "No valid kbsync API key."},
                        "403": {"description": "The asserted user has no enabled kbsync account."}
                    },
                    "security": [{"kbsyncApiKey": []}]
                }
            }
        },
        "components": {
            "securitySchemes": {
                "kbsyncApiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A kbsync API key (kbs_…); for Open WebUI, a service key."
                }
            }
        }
    })
}
