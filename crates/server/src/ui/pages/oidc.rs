//! Signing in with the OpenID provider: `/auth/oidc/login` sends the browser to the provider with a
//! binding cookie; `/auth/oidc/callback` completes the sign-in in that browser and sets the same
//! session cookie as password sign-in.

use super::signin::login_page;
use super::*;
use crate::service::oidc;

/// The cookie that binds a sign-in to the browser that started it: only sent back to `/auth/oidc`.
const FLOW_COOKIE: &str = "kbsync_oidc";

fn flow_cookie(state: &AppState, value: &str, max_age_secs: i64) -> String {
    cookie_at(state, "/auth/oidc", FLOW_COOKIE, value, max_age_secs)
}

/// Starts a sign-in at the provider, returning to `next` (a local path) afterwards.
pub async fn oidc_login(State(state): State<AppState>, Query(p): Query<NextParam>) -> UiResult {
    let Some(provider) = state.oidc.clone() else {
        return Err(ApiError::NotFound("sign-in provider").into());
    };
    let next = p
        .next
        .filter(|n| is_local_path(n))
        .unwrap_or_else(|| "/kb".to_owned());
    match oidc::begin(&state, &provider, &next).await {
        Ok(started) => {
            let mut response = Redirect::to(&started.authorize_url).into_response();
            append_cookie(
                &mut response,
                &flow_cookie(&state, &started.binding, oidc::FLOW_TTL_SECS),
            );
            Ok(response)
        }
        Err(e @ ApiError::Unavailable(_)) => Ok(refused(&state, String::new(), e)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Completes a sign-in: on success the session cookie is set and the browser goes where the sign-in
/// was started for; otherwise the sign-in page says why.
pub async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> UiResult {
    let Some(provider) = state.oidc.clone() else {
        return Err(ApiError::NotFound("sign-in provider").into());
    };
    let Some(flow_state) = q.state.as_deref().filter(|s| !s.is_empty()) else {
        let e = ApiError::BadRequest {
            message: "The provider's answer carries no state. Start the sign-in again.".to_owned(),
        };
        return Ok(refused(&state, String::new(), e));
    };
    let callback = oidc::Callback {
        state: flow_state,
        code: q.code.as_deref(),
        error: q.error.as_deref(),
        error_description: q.error_description.as_deref(),
        binding: auth::cookie(&headers, FLOW_COOKIE),
    };
    let mut response = match oidc::complete(&state, &provider, callback).await {
        Ok(done) => {
            let target = if is_local_path(&done.next) {
                done.next.as_str()
            } else {
                "/kb"
            };
            let ttl = state.settings.session_ttl.num_seconds().max(0);
            let mut response = Redirect::to(target).into_response();
            append_cookie(
                &mut response,
                &cookie(&state, SESSION_COOKIE, &done.login.token, ttl),
            );
            response
        }
        Err(e @ (ApiError::BadRequest { .. } | ApiError::Forbidden(_) | ApiError::Unavailable(_))) => {
            refused(&state, String::new(), e)
        }
        Err(e) => return Err(e.into()),
    };
    append_cookie(&mut response, &flow_cookie(&state, "", 0));
    Ok(response)
}

/// The sign-in page saying why a sign-in did not happen, with the error's status.
fn refused(state: &AppState, next: String, e: ApiError) -> Response {
    let status = e.status();
    let message = match &e {
        ApiError::Unavailable(m) => m.clone(),
        other => other.to_string(),
    };
    let page = login_page(state, next, String::new(), Some(message));
    let token = page.login_csrf.clone();
    let mut response = (status, render(&page)).into_response();
    append_cookie(&mut response, &cookie(state, LOGIN_COOKIE, &token, 3600));
    response
}
