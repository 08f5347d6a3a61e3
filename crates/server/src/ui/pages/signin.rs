//! Signing in and out: the sign-in form (double-submit CSRF before there is a session) and the
//! session cookie.

use super::*;

pub async fn home() -> Redirect {
    Redirect::to("/kb")
}

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

/// The sign-in form. Before there is a session, its CSRF token is a random value kept in a
/// short-lived cookie of its own and echoed by the form (double submit).
pub async fn login_form(State(state): State<AppState>, Query(p): Query<NextParam>) -> Response {
    let token = state.random.token_hex(16);
    let page = views::LoginPage {
        chrome: Chrome::anonymous(),
        login_csrf: token.clone(),
        next: p.next.filter(|n| is_local_path(n)).unwrap_or_default(),
        email: String::new(),
        error: None,
    };
    with_cookie(render(&page), &cookie(&state, LOGIN_COOKIE, &token, 3600))
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
            | ApiError::Invalid { .. }),
        ) => {
            let status = e.status();
            let message = match e {
                ApiError::BadCredentials => "Wrong email or password.".to_owned(),
                other => other.to_string(),
            };
            let page = views::LoginPage {
                chrome: Chrome::anonymous(),
                login_csrf: f.csrf,
                next: if is_local_path(&f.next) {
                    f.next
                } else {
                    String::new()
                },
                email: f.email,
                error: Some(message),
            };
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
    let mut response = Redirect::to("/login").into_response();
    append_cookie(&mut response, &cookie(&state, SESSION_COOKIE, "", 0));
    Ok(response)
}
