//! Who may read and change a knowledge base: its manual grants.

use super::*;

#[derive(Deserialize)]
pub struct SavedParam {
    saved: Option<String>,
}

pub async fn access_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<SavedParam>,
) -> UiResult {
    let people = overview::access(&state, &session.user, parse_kb(&id)?).await?;
    let page = access_view(&state, &session, people, None, p.saved.is_some()).await?;
    Ok(render(&page))
}

async fn access_view(
    state: &AppState,
    session: &Session,
    people: overview::AccessPeople,
    error: Option<String>,
    saved: bool,
) -> Result<views::AccessPage, UiError> {
    let owner = state
        .store
        .get_user(people.view.kb.owner_id)
        .await
        .map_err(ApiError::from)?;
    let emails = |users: &[kbsync_core::User]| {
        users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(views::AccessPage {
        chrome: Chrome::of(session, "kb"),
        id: people.view.kb.id.to_string(),
        name: people.view.kb.name.clone(),
        owner: owner.email,
        sharing: DatasourceKind::of(people.view.kb.kb_type).map(|k| k.info().sharing),
        read: emails(&people.read),
        write: emails(&people.write),
        error,
        saved,
    })
}

#[derive(Deserialize)]
pub struct AccessForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    read: String,
    #[serde(default)]
    write: String,
}

pub async fn access_save(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<AccessForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    let split = |text: &str| -> Vec<String> {
        text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match overview::set_access_by_email(&state, &session.user, kb_id, &split(&f.read), &split(&f.write)).await
    {
        Ok(_) => Ok(Redirect::to(&format!("/kb/{kb_id}/access?saved=1")).into_response()),
        Err(e @ ApiError::Invalid { .. }) => {
            let people = overview::access(&state, &session.user, kb_id).await?;
            let mut page = access_view(&state, &session, people, Some(e.to_string()), false).await?;
            page.read = f.read;
            page.write = f.write;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
