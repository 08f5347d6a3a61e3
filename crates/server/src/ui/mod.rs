//! The web UI: server-rendered pages (askama templates compiled into the binary, HTML
//! auto-escaped), plain form posts answered with a redirect, and one small hand-written script
//! for what needs a browser: the live progress bar (Server-Sent Events), the connect popup and
//! the folder picker. See docs/ui.md.
//!
//! Sessions are the API's session tokens carried in the `kbsync_session` cookie. Every form
//! carries a CSRF token derived from the session, checked before anything changes.

pub(crate) mod api_docs;
pub mod badge;
mod chart;
mod pages;
mod views;

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequestParts},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use kbsync_core::User;

use crate::{
    AppState,
    auth::{self, constant_time_eq},
    error::ApiError,
};

/// Form bodies larger than this are refused; uploads have their own limit.
const FORM_BODY_LIMIT: usize = 256 * 1024;

/// The UI's routes, apart from the API's (merged by [`crate::router`]).
pub fn router() -> Router<AppState> {
    let uploads = Router::new()
        .route("/kb/{id}/files", post(pages::upload))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/auth/oidc/login", get(pages::oidc_login))
        .route("/auth/oidc/callback", get(pages::oidc_callback))
        .route("/kb", get(pages::kb_list).post(pages::kb_create))
        .route("/kb/new", get(pages::kb_new))
        .route("/kb/{id}", get(pages::kb_page))
        .route("/kb/{id}/sync", post(pages::sync_now))
        .route("/kb/{id}/cancel", post(pages::cancel))
        .route("/kb/{id}/openwebui", post(pages::openwebui_on))
        .route("/kb/{id}/openwebui/publish", post(pages::openwebui_publish))
        .route("/kb/{id}/openwebui/off", post(pages::openwebui_off))
        .route("/kb/{id}/connect", get(pages::connect))
        .route("/kb/{id}/pick", get(pages::picker))
        .route("/kb/{id}/sources", post(pages::add_sources))
        .route("/kb/{id}/sources/{source_id}/remove", post(pages::remove_source))
        .route(
            "/kb/{id}/access",
            get(pages::access_page).post(pages::access_save),
        )
        .route("/kb/{id}/delete", post(pages::kb_delete))
        .route("/search", get(pages::search))
        .route("/admin", get(pages::admin))
        .route("/account", get(pages::account))
        .route("/account/password", post(pages::account_password))
        .route("/keys", get(pages::keys).post(pages::key_create))
        .route("/keys/{id}/revoke", post(pages::key_revoke))
        .route("/admin/users", get(pages::admin_users))
        .route("/admin/users/{id}/role", post(pages::admin_user_role))
        .route("/admin/users/{id}/disabled", post(pages::admin_user_disabled))
        .route("/admin/users/{id}/password", post(pages::admin_user_password))
        .route("/admin/users/{id}/delete", post(pages::admin_user_delete))
        .route(
            "/admin/keys",
            get(pages::admin_keys).post(pages::admin_key_create),
        )
        .route("/admin/keys/{id}/revoke", post(pages::admin_key_revoke))
        .route("/admin/keys/{id}/assertion", post(pages::admin_key_assertion))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/app.js", get(pages::script))
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .merge(uploads)
        .layer(middleware::map_response(security_headers))
}

/// Pages may load only their own script and stylesheet, talk only to this origin, and not be
/// framed.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// A signed-in web UI user, from the session cookie. Without a valid session a page redirects
/// to the sign-in page, which comes back here afterwards.
pub struct Session {
    pub user: User,
    /// The session token itself (sign-out ends it).
    token: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's (403).
    pub fn check_csrf(&self, submitted: &str) -> Result<(), UiError> {
        if constant_time_eq(submitted, &self.csrf) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let sign_in = || UiError::SignIn {
            next: (parts.method == http::Method::GET)
                .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
                .flatten(),
        };
        let Some(token) = auth::session_cookie(parts) else {
            return Err(sign_in());
        };
        match auth::user_for_token(state, token).await {
            Ok(user) => Ok(Session {
                user,
                csrf: auth::csrf_token(token),
                token: token.to_owned(),
            }),
            Err(ApiError::Unauthenticated) => Err(sign_in()),
            Err(e) => Err(UiError::Api(e)),
        }
    }
}

/// How a UI request fails: back to the sign-in page, a refused form, or a service error shown
/// as a page with the same status the API would answer.
#[derive(Debug)]
pub enum UiError {
    SignIn { next: Option<String> },
    Csrf,
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn { next } => {
                let target = match next.filter(|n| is_local_path(n)) {
                    Some(next) => format!(
                        "/login?next={}",
                        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    ),
                    None => "/login".to_owned(),
                };
                Redirect::to(&target).into_response()
            }
            UiError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from kbsync. Go back, reload the page and try again.",
            ),
            UiError::Api(e) => {
                let status = e.status();
                let message = match &e {
                    ApiError::Internal(detail) => {
                        tracing::error!(error = %detail, "page failed");
                        "Something went wrong on our side; the details are in the server log.".to_owned()
                    }
                    ApiError::Unavailable(detail) => {
                        tracing::warn!(error = %detail, "dependency unavailable");
                        "A service kbsync depends on is unavailable; try again in a moment.".to_owned()
                    }
                    other => capitalise(&other.to_string()),
                };
                error_page(status, &message)
            }
        }
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let page = views::ErrorPage {
        chrome: views::Chrome::anonymous(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: message.to_owned(),
    };
    (status, render(&page)).into_response()
}

/// A path on this site, safe to redirect to after signing in: it starts with a single `/` whose
/// next character is neither `/` nor `\\`, and has no backslash, whitespace or control character
/// anywhere, neither as written nor after percent-decoding (browsers treat `\\` like `/` and drop
/// tabs and newlines, so `/\\evil`, `/%09/evil` or `/%2F/evil` could otherwise lead to another
/// host). Anything else is refused and the caller goes to its default page.
pub fn is_local_path(path: &str) -> bool {
    /// Percent-decodings checked beyond the text itself (`%252F` → `%2F` → `/`).
    const DECODING_ROUNDS: usize = 3;
    let mut current = path.as_bytes().to_vec();
    for _ in 0..=DECODING_ROUNDS {
        if !is_plain_local_path(&current) {
            return false;
        }
        let decoded = percent_decode(&current);
        if decoded == current {
            return true;
        }
        current = decoded;
    }
    // Still changing after several rounds: nobody writes links like that.
    false
}

fn is_plain_local_path(path: &[u8]) -> bool {
    let starts_locally = match path {
        [b'/'] => true,
        [b'/', second, ..] => *second != b'/' && *second != b'\\',
        _ => false,
    };
    // Bytes that are not UTF-8 decode from escapes only; a path that is not text is refused.
    starts_locally
        && std::str::from_utf8(path).is_ok_and(|text| {
            !text
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        })
}

/// Decodes `%XX` escapes; anything else (including a malformed escape) stays as it is.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&first, tail)) = rest.split_first() {
        match (first, hex(tail.first()), hex(tail.get(1))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                rest = tail.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(first);
                rest = tail;
            }
        }
    }
    out
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Renders a template; a template that fails to render (it should not) is a logged 500.
pub fn render<T: askama::Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for good in [
            "/",
            "/kb",
            "/kb/1?x=2",
            "/search?q=budget+plan&kb=3",
            "/kb/a%2Fb",
            "/kb/100%25",
        ] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "kb",
            "",
            // Browsers drop tabs and newlines and read a backslash as a slash.
            "/%09/evil.example",
            "/\t/evil.example",
            "\t//evil",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%5Cevil",
            "/%5cevil",
            "/kb\\x",
            "%2F%2Fevil",
            "/%2F/evil",
            "/%2f%2fevil",
            "/%252F/evil",
            "/%25252F/evil",
            "/ /evil",
            "/%20/evil",
            "/%00",
            "/\u{a0}evil",
            "/%C2%A0evil",
            "/%FF",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
