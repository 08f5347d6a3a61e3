//! Documents of local knowledge bases: upload, listing, download, deletion.

use bytes::Bytes;
use futures::Stream;
use kbsync_core::{Document, DocumentId, KbId, KbType, User};
use kbsync_ingest::FileKind;
use kbsync_store::{BlobError, NewDocument, Page, PageOf, StoreError};

use super::knowledge;
use crate::{AppState, error::ApiError};

const MAX_FILE_NAME_CHARS: usize = 255;

/// Stores an uploaded file and queues it for extraction. The document is `pending` on return. A
/// file named like a document already uploaded to the knowledge base replaces that document's
/// content (same id; its old chunks leave search and its old blob is collected later).
pub async fn upload<S, E>(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    file_name: Option<&str>,
    content_type: Option<&str>,
    body: S,
) -> Result<Document, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let view = knowledge::writable(state, user, kb_id).await?;
    if view.kb.kb_type != KbType::Local {
        return Err(ApiError::Conflict(format!(
            "files of a {} knowledge base come from its sources; uploads go to local knowledge bases",
            view.kb.kb_type
        )));
    }
    let name = sanitize_file_name(file_name.unwrap_or_default())?;
    let kind = FileKind::detect(&name, content_type).ok_or_else(|| {
        ApiError::invalid(
            "file",
            format!(
                "unsupported file type for {name:?}; supported: {}",
                kbsync_ingest::supported_extensions().join(", ")
            ),
        )
    })?;
    let limit = state.settings.max_upload_bytes;
    let held = match state.blobs.write_stream_held(body, limit).await {
        Ok(held) => held,
        Err(BlobError::TooLarge { limit }) => {
            return Err(ApiError::PayloadTooLarge {
                what: "the file",
                limit_bytes: limit,
            });
        }
        Err(BlobError::Source(reason)) => {
            return Err(ApiError::BadRequest {
                message: format!("the upload could not be read: {reason}"),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let blob = held.blob().clone();
    let (doc, replaced) = state
        .store
        .put_uploaded_document(
            state.random.uuid(),
            NewDocument {
                kb_id,
                path: format!("/{name}"),
                name,
                mime: kind.mime().to_owned(),
                size: i64::try_from(blob.size).unwrap_or(i64::MAX),
                content_hash: blob.hash,
                source_item_id: None,
                web_url: None,
            },
            state.clock.now(),
        )
        .await?;
    // The row is committed: from now on the collector keeps the blob; put it back in case it
    // was collected before (docs/storage.md).
    held.settle().await?;
    if replaced {
        tracing::info!(kb.id = %kb_id, document.id = %doc.id, "an upload replaced the document of the same name");
    }
    state.pipeline.enqueue(doc.clone());
    Ok(doc)
}

pub async fn list(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    page: Page,
) -> Result<PageOf<Document>, ApiError> {
    let view = knowledge::visible(state, user, kb_id).await?;
    listing(state, user, &view, page).await
}

/// The documents of a knowledge base the caller may read: all of them, or those whose access
/// lists name the caller.
pub async fn listing(
    state: &AppState,
    user: &User,
    view: &knowledge::KbView,
    page: Page,
) -> Result<PageOf<Document>, ApiError> {
    if view.access.can_read() {
        Ok(state.store.list_documents(view.kb.id, page).await?)
    } else {
        Ok(state
            .store
            .list_readable_documents(view.kb.id, user.id, page)
            .await?)
    }
}

pub async fn get(state: &AppState, user: &User, kb_id: KbId, id: DocumentId) -> Result<Document, ApiError> {
    let view = knowledge::visible(state, user, kb_id).await?;
    if !view.access.can_read() && !state.store.may_read_document(kb_id, id, user.id).await? {
        return Err(ApiError::NotFound("file"));
    }
    find(state, kb_id, id).await
}

/// The document and an open handle on its original bytes.
pub async fn content(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    id: DocumentId,
) -> Result<(Document, tokio::fs::File), ApiError> {
    let doc = get(state, user, kb_id, id).await?;
    match state.blobs.open(&doc.content_hash).await {
        Ok(file) => Ok((doc, file)),
        Err(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::internal(
            "blob store",
            format!("blob of document {id} is missing"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(state: &AppState, user: &User, kb_id: KbId, id: DocumentId) -> Result<(), ApiError> {
    knowledge::writable(state, user, kb_id).await?;
    // The blob is collected later, if no document references it then (docs/storage.md).
    match state.store.delete_document(kb_id, id, state.clock.now()).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound) => Err(ApiError::NotFound("file")),
        Err(e) => Err(e.into()),
    }
}

async fn find(state: &AppState, kb_id: KbId, id: DocumentId) -> Result<Document, ApiError> {
    match state.store.get_document(kb_id, id).await {
        Ok(doc) => Ok(doc),
        Err(StoreError::NotFound) => Err(ApiError::NotFound("file")),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the last path component of an uploaded name, without control characters.
fn sanitize_file_name(raw: &str) -> Result<String, ApiError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(ApiError::invalid("file", "the multipart field needs a file name"));
    }
    if cleaned.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(ApiError::invalid(
            "file",
            format!("file names must be at most {MAX_FILE_NAME_CHARS} characters"),
        ));
    }
    Ok(cleaned.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_directories_and_control_characters() {
        assert_eq!(sanitize_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(
            sanitize_file_name("C:\\Users\\a\\report.pdf").unwrap(),
            "report.pdf"
        );
        assert_eq!(sanitize_file_name(" a\u{7}b.txt ").unwrap(), "ab.txt");
        assert!(sanitize_file_name("dir/").is_err());
        assert!(sanitize_file_name("..").is_err());
    }
}
