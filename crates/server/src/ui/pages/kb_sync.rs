//! Syncing: run now, cancel, the connect popup, the picker and the sources it adds or removes.

use super::*;

pub async fn sync_now(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    sync::start(&state, &session.user, kb_id, None).await?;
    Ok(to_kb(kb_id))
}

pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    sync::cancel(&state, &session.user, kb_id).await?;
    Ok(to_kb(kb_id))
}

#[derive(Deserialize)]
pub struct ConnectParams {
    #[serde(default)]
    csrf: String,
    datasource: Option<String>,
}

/// Opened in the connect popup: starts the authorization flow, gives this browser the flow's
/// binding cookie and sends it to the authorization server, which comes back to the API's
/// callback page (which needs that cookie). A GET (a popup is a navigation), so the CSRF token
/// travels in the query.
pub async fn connect(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<ConnectParams>,
) -> UiResult {
    session.check_csrf(&p.csrf)?;
    let kb_id = parse_kb(&id)?;
    let kind = p.datasource.as_deref().map(connections::datasource).transpose()?;
    let (kind, started) = connections::initiate(&state, &session.user, kind, kb_id).await?;
    let cookie = api::datasources::binding_cookie(
        &state.settings.public_url,
        api::datasources::RouteFamily::of_callback(&state, kind),
        &started,
    );
    Ok(with_cookie(
        Redirect::to(&started.auth_url).into_response(),
        &cookie,
    ))
}

/// The picker browses what the connected account can read: for those who manage the knowledge
/// base only, like adding and removing sources.
pub async fn picker(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> UiResult {
    let view = knowledge::manageable(&state, &session.user, parse_kb(&id)?).await?;
    let info = DatasourceKind::of(view.kb.kb_type)
        .ok_or(ApiError::Conflict(
            "a knowledge base of local files has nothing to pick from".into(),
        ))?
        .info();
    Ok(render(&views::PickerPage {
        chrome: Chrome::of(&session, "kb"),
        id: view.kb.id.to_string(),
        name: view.kb.name,
        datasource: info.name,
        picker_root: info.picker_root,
        entry_labels: serde_json::json!({
            "drive": info.entry_labels.drive,
            "site": info.entry_labels.site,
            "folder": info.entry_labels.folder,
            "file": info.entry_labels.file,
        })
        .to_string(),
    }))
}

#[derive(Deserialize)]
struct PickedItemForm {
    #[serde(rename = "type")]
    kind: String,
    drive_id: String,
    item_id: String,
    name: String,
    #[serde(default)]
    path: String,
}

/// The picker's form: `csrf`, `datasource` and one `item` field (a JSON object) per picked item.
pub async fn add_sources(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let mut csrf = String::new();
    let mut datasource = None;
    let mut raw_items = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "csrf" => csrf = value.into_owned(),
            "datasource" => datasource = Some(value.into_owned()),
            "item" => raw_items.push(value.into_owned()),
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let mut items = Vec::with_capacity(raw_items.len());
    for raw in raw_items {
        let item: PickedItemForm = serde_json::from_str(&raw)
            .map_err(|e| ApiError::invalid("items", format!("not a picked item: {e}")))?;
        items.push(service::sync::PickedItem {
            kind: item.kind,
            drive_id: item.drive_id,
            item_id: item.item_id,
            name: item.name,
            path: item.path,
        });
    }
    sync::add_sources(&state, &session.user, kb_id, datasource.as_deref(), items, None).await?;
    Ok(to_kb(kb_id))
}

pub async fn remove_source(
    State(state): State<AppState>,
    session: Session,
    Path((id, source_id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    let source_id: Uuid = source_id.parse().map_err(|_| ApiError::NotFound("source"))?;
    sync::remove_source(&state, &session.user, kb_id, source_id).await?;
    Ok(to_kb(kb_id))
}
