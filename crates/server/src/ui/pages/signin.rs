//! Signing in and out: the sign-in form (double-submit CSRF before there is a session) and the
//! session cookie.

use super::*;

pub async fn home() -> Redirect {
    Redirect::to("/kb")
}

#[derive(Deserialize)]
pub struct NextParam {
    pub(super) next: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
}

/// The sign-in form. Before there is a session, its CSRF token is a random value kept in a
/// short-lived cookie of its own and echoed by the form (double submit).
pub async fn login_form(State(state): State<AppState>, Query(p): Query<NextParam>) -> Response {
    let next = p.next.filter(|n| is_local_path(n)).unwrap_or_default();
    let signed_out = p.signed_out.is_some();
    let provider_sign_out_url = match (&state.oidc, signed_out) {
        (Some(oidc), true) => {
            let back = format!("{}/login", state.settings.public_url.trim_end_matches('/'));
            oidc.client.end_session_url(&back).await
        }
        _ => None,
    };
    let mut page = login_page(&state, next, String::new(), None);
    page.signed_out = signed_out;
    page.provider_sign_out_url = provider_sign_out_url;
    let token = page.login_csrf.clone();
    with_cookie(render(&page), &cookie(&state, LOGIN_COOKIE, &token, 3600))
}

/// The sign-in page with a fresh CSRF token (the caller sets its cookie), for `next` (a local path).
pub(super) fn login_page(
    state: &AppState,
    next: String,
    email: String,
    error: Option<String>,
) -> views::LoginPage {
    let provider_login_url = if next.is_empty() {
        "/auth/oidc/login".to_owned()
    } else {
        format!(
            "/auth/oidc/login?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        )
    };
    views::LoginPage {
        chrome: Chrome::anonymous(),
        login_csrf: state.random.token_hex(16),
        next,
        email,
        error,
        password_login: state.settings.password_login,
        provider: state.oidc.as_ref().map(|o| o.display_name().to_owned()),
        provider_login_url,
        signed_out: false,
        provider_sign_out_url: None,
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> UiResult {
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f.csrf, expected) {
        return Err(UiError::Csrf);
    }
    match users::login(&state, client, &f.email, &f.password).await {
        Ok(outcome) => {
            let target = if is_local_path(&f.next) {
                f.next.as_str()
            } else {
                "/kb"
            };
            let ttl = state.settings.session_ttl.num_seconds().max(0);
            let mut response = Redirect::to(target).into_response();
            append_cookie(
                &mut response,
                &cookie(&state, SESSION_COOKIE, &outcome.token, ttl),
            );
            append_cookie(&mut response, &cookie(&state, LOGIN_COOKIE, "", 0));
            Ok(response)
        }
        Err(
            e @ (ApiError::BadCredentials
            | ApiError::TooManyRequests { .. }
            | ApiError::Busy { .. }
            | ApiError::Forbidden(_)
            | ApiError::Invalid { .. }),
        ) => {
            let status = e.status();
            let message = match e {
                ApiError::BadCredentials => "Wrong email or password.".to_owned(),
                other => other.to_string(),
            };
            let next = if is_local_path(&f.next) {
                f.next
            } else {
                String::new()
            };
            let mut page = login_page(&state, next, f.email, Some(message));
            page.login_csrf = f.csrf;
            Ok((status, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

pub async fn logout(State(state): State<AppState>, session: Session, Form(f): Form<CsrfForm>) -> UiResult {
    session.check_csrf(&f.csrf)?;
    users::logout(&state, &session.token).await?;
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    append_cookie(&mut response, &cookie(&state, SESSION_COOKIE, "", 0));
    Ok(response)
}
