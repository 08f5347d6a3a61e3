//! The web UI over plain HTTP (no browser): sessions, cookie flags, CSRF, escaping, what the
//! session cookie may do on the API, the connect popup's binding cookie, and which controls and
//! routes need manage access. The browser test is `ui_browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{ADMIN_EMAIL, Db, OneDriveTest, Options, PASSWORD, TestServer};
use reqwest::{StatusCode, header};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    pages_need_a_session_and_send_strangers_to_sign_in,
    signing_in_never_sends_the_browser_to_another_site,
    signing_in_sets_a_strict_session_cookie_and_signing_out_ends_it,
    every_form_needs_the_csrf_token_of_its_session,
    an_upload_form_field_over_the_size_limit_is_refused_with_400,
    drive_and_user_text_is_escaped_in_pages,
    the_session_cookie_opens_only_read_only_api_routes,
    pages_render_for_a_signed_in_user,
    the_connect_popup_binds_the_flow_to_its_browser,
    writers_get_no_source_controls_and_may_not_pick_add_or_remove_sources,
    the_keys_page_shows_a_new_key_once_and_revokes_it,
    a_disabled_users_cookie_opens_nothing,
    only_admins_see_the_admin_pages_and_their_forms_act,
    the_account_page_changes_the_password_and_ends_other_sessions,
    the_kb_and_admin_pages_chart_the_runs_with_their_numbers,
);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of a hidden `csrf` field in a page.
fn csrf_in(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a csrf field") + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Signs in as the admin through the form; returns the `Cookie` header value and the session's
/// CSRF token.
async fn sign_in(s: &TestServer) -> (String, String) {
    sign_in_as(s, ADMIN_EMAIL).await
}

/// Signs in as `email` (password [`PASSWORD`]) through the form.
pub(crate) async fn sign_in_as(s: &TestServer, email: &str) -> (String, String) {
    let http = client();
    let resp = http.get(format!("{}/login", s.base)).send().await.unwrap();
    let login_cookie = set_cookies(&resp)
        .iter()
        .find_map(|c| cookie_value(c, "kbsync_login").map(str::to_owned))
        .unwrap();
    let page = resp.text().await.unwrap();
    let resp = http
        .post(format!("{}/login", s.base))
        .header(header::COOKIE, format!("kbsync_login={login_cookie}"))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("csrf", &csrf_in(&page)),
            ("next", "/kb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&resp)
        .iter()
        .find_map(|c| cookie_value(c, "kbsync_session").map(str::to_owned))
        .unwrap();
    let cookie = format!("kbsync_session={session}");
    let page = http
        .get(format!("{}/kb", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (cookie, csrf_in(&page))
}

async fn pages_need_a_session_and_send_strangers_to_sign_in(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    for path in ["/kb", "/kb/new", "/search?q=x", "/admin"] {
        let resp = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        let location = resp.headers()[header::LOCATION].to_str().unwrap();
        assert!(location.starts_with("/login?next=%2F"), "{path} → {location}");
    }
    // A stale or forged cookie is no session either.
    let resp = http
        .get(format!("{}/kb", s.base))
        .header(header::COOKIE, "kbsync_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // A sign-in form with no form cookie (a cross-site post) is refused.
    let resp = http
        .post(format!("{}/login", s.base))
        .form(&[("email", ADMIN_EMAIL), ("password", PASSWORD), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Sign-in sends only to local paths afterwards.
    let page = http
        .get(format!("{}/login?next=https://evil.example/", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("evil.example"));
    s.stop().await;
}

/// `next` after signing in: every trick that makes a browser leave the origin (a second slash, a
/// backslash, a tab or newline the browser drops, percent-encoded or not) ends on the default page.
async fn signing_in_never_sends_the_browser_to_another_site(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let attempts = [
        "/%09/evil.example",
        "/\t/evil.example",
        "/%0a/evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "//evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%252F/evil.example",
        "https://evil.example",
        "\t//evil.example",
    ];
    for next in attempts {
        // The form echoes no such `next` ...
        let resp = http
            .get(format!("{}/login", s.base))
            .query(&[("next", next)])
            .send()
            .await
            .unwrap();
        let login_cookie = set_cookies(&resp)
            .iter()
            .find_map(|c| cookie_value(c, "kbsync_login").map(str::to_owned))
            .unwrap();
        let page = resp.text().await.unwrap();
        assert!(!page.contains("evil.example"), "{next:?} was echoed");
        // ... and a posted one is not followed.
        let resp = http
            .post(format!("{}/login", s.base))
            .header(header::COOKIE, format!("kbsync_login={login_cookie}"))
            .form(&[
                ("email", ADMIN_EMAIL),
                ("password", PASSWORD),
                ("csrf", &csrf_in(&page)),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(resp.headers()[header::LOCATION], "/kb", "{next:?}");
    }
    s.stop().await;
}

async fn signing_in_sets_a_strict_session_cookie_and_signing_out_ends_it(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let resp = http.get(format!("{}/login", s.base)).send().await.unwrap();
    let login_cookie = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("kbsync_login="))
        .unwrap();
    let page = resp.text().await.unwrap();
    let value = cookie_value(&login_cookie, "kbsync_login").unwrap();
    // A wrong password shows the form again, with a message.
    let resp = http
        .post(format!("{}/login", s.base))
        .header(header::COOKIE, format!("kbsync_login={value}"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", "wrong password"),
            ("csrf", &csrf_in(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("Wrong email or password"));

    let resp = http
        .post(format!("{}/login", s.base))
        .header(header::COOKIE, format!("kbsync_login={value}"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", PASSWORD),
            ("csrf", &csrf_in(&page)),
            ("next", "/search"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/search");
    let session = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("kbsync_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    let cookie = session.split(';').next().unwrap().to_owned();

    // Pages carry the security headers.
    let resp = http
        .get(format!("{}/kb", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let csrf = csrf_in(&resp.text().await.unwrap());

    // Signing out ends the session on the server, not only in the browser.
    let resp = http
        .post(format!("{}/logout", s.base))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&resp)
            .iter()
            .any(|c| c.starts_with("kbsync_session=;") && c.contains("Max-Age=0"))
    );
    let resp = http
        .get(format!("{}/kb", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    s.stop().await;

    // Behind https the cookie is Secure.
    let Some(s) = TestServer::start(
        db,
        Options {
            public_url: "https://kb.example.com".into(),
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let http = client();
    let resp = http.get(format!("{}/login", s.base)).send().await.unwrap();
    let login_cookie = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("kbsync_login="))
        .unwrap();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let value = cookie_value(&login_cookie, "kbsync_login").unwrap().to_owned();
    let page = resp.text().await.unwrap();
    let resp = http
        .post(format!("{}/login", s.base))
        .header(header::COOKIE, format!("kbsync_login={value}"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", PASSWORD),
            ("csrf", &csrf_in(&page)),
        ])
        .send()
        .await
        .unwrap();
    let session = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("kbsync_session="))
        .unwrap();
    assert!(
        session.contains("; Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    s.stop().await;
}

async fn every_form_needs_the_csrf_token_of_its_session(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let (cookie, csrf) = sign_in(&s).await;
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        http.post(format!("{}{path}", s.base))
            .header(header::COOKIE, &cookie)
            .form(&form)
            .send()
    };
    // No token, a wrong token, another session's token: 403, and nothing is created.
    let resp = post("/kb", vec![("name", "No token".into())]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post("/kb", vec![("name", "Wrong".into()), ("csrf", "0".repeat(64))])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (_, other_csrf) = sign_in(&s).await;
    assert_ne!(other_csrf, csrf);
    let resp = post("/kb", vec![("name", "Other".into()), ("csrf", other_csrf)])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let token = s.admin_token().await;
    let (_, list) = s.get("/api/v1/knowledge", Some(&token)).await;
    assert_eq!(list["total"], 0, "{list}");

    // The right token creates it and redirects to its page.
    let resp = post("/kb", vec![("name", "Mine".into()), ("csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/kb/"), "{location}");
    let kb = location.trim_start_matches("/kb/").to_owned();

    // The other forms too.
    for path in [
        format!("/kb/{kb}/sync"),
        format!("/kb/{kb}/cancel"),
        format!("/kb/{kb}/access"),
        format!("/kb/{kb}/delete"),
        format!("/kb/{kb}/sources"),
        "/keys".to_owned(),
        "/account/password".to_owned(),
        "/admin/keys".to_owned(),
        format!("/admin/users/{}/role", uuid::Uuid::new_v4()),
        format!("/admin/users/{}/disabled", uuid::Uuid::new_v4()),
        format!("/admin/users/{}/password", uuid::Uuid::new_v4()),
        format!("/admin/users/{}/delete", uuid::Uuid::new_v4()),
        format!("/keys/{}/revoke", uuid::Uuid::new_v4()),
        format!("/admin/keys/{}/revoke", uuid::Uuid::new_v4()),
        format!("/admin/keys/{}/assertion", uuid::Uuid::new_v4()),
        "/logout".to_owned(),
    ] {
        let resp = http
            .post(format!("{}{path}", s.base))
            .header(header::COOKIE, &cookie)
            .form(&[("csrf", "nope")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // The connect popup's link carries the token in its query.
    let resp = http
        .get(format!("{}/kb/{kb}/connect?csrf=nope", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // An upload without the token stores nothing.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
    );
    let resp = http
        .post(format!("{}/kb/{kb}/files", s.base))
        .header(header::COOKIE, &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With it, the upload lands.
    let form = reqwest::multipart::Form::new().text("csrf", csrf.clone()).part(
        "file",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
    );
    let resp = http
        .post(format!("{}/kb/{kb}/files", s.base))
        .header(header::COOKIE, &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, files) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&token))
        .await;
    assert_eq!(files["total"], 1, "{files}");
    // Deleting with the token works.
    let resp = post_kb_delete(&http, &s, &cookie, &kb, &csrf).await;
    assert_eq!(resp, StatusCode::SEE_OTHER);
    s.stop().await;
}

/// The upload route has no body limit (files stream under their own), so every other field is
/// read only up to a small cap: a longer CSRF field, or a long field of any other name, is a 400
/// and nothing is stored.
async fn an_upload_form_field_over_the_size_limit_is_refused_with_400(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "uploads").await;
    let (cookie, csrf) = sign_in(&s).await;
    let http = client();
    let long = "a".repeat(2000);
    let file = || reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt");
    for form in [
        reqwest::multipart::Form::new()
            .text("csrf", long.clone())
            .part("file", file()),
        reqwest::multipart::Form::new()
            .text("note", long.clone())
            .text("csrf", csrf.clone())
            .part("file", file()),
        reqwest::multipart::Form::new()
            .text("csrf", format!("{csrf}{long}"))
            .part("file", file()),
    ] {
        let resp = http
            .post(format!("{}/kb/{kb}/files", s.base))
            .header(header::COOKIE, &cookie)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let page = resp.text().await.unwrap();
        assert!(page.contains("longer than 512 bytes"), "{page}");
    }
    // Too many small fields are refused as well.
    let mut form = reqwest::multipart::Form::new();
    for i in 0..40 {
        form = form.text(format!("f{i}"), "x");
    }
    let resp = http
        .post(format!("{}/kb/{kb}/files", s.base))
        .header(header::COOKIE, &cookie)
        .multipart(form.text("csrf", csrf.clone()).part("file", file()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (_, files) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&token))
        .await;
    assert_eq!(files["total"], 0, "{files}");
    s.stop().await;
}

async fn post_kb_delete(
    http: &reqwest::Client,
    s: &TestServer,
    cookie: &str,
    kb: &str,
    csrf: &str,
) -> StatusCode {
    http.post(format!("{}/kb/{kb}/delete", s.base))
        .header(header::COOKIE, cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
        .status()
}

async fn drive_and_user_text_is_escaped_in_pages(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let (cookie, _) = sign_in(&s).await;
    let token = s.admin_token().await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&token),
            serde_json::json!({"name": "<img src=x onerror=alert(1)>", "description": "\"quoted\" & <b>bold</b>"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let kb = body["id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .upload(
            Some(&token),
            &kb,
            "<script>alert(1) x.txt",
            b"searchable needle text".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    s.wait_processed(&token, &kb, body["id"].as_str().unwrap()).await;

    let get = |path: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        let base = s.base.clone();
        async move {
            http.get(format!("{base}{path}"))
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    for page in [
        get(format!("/kb/{kb}")).await,
        get("/kb".into()).await,
        get("/search?q=needle".into()).await,
    ] {
        assert!(!page.contains("<script>alert(1)"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(!page.contains("<b>bold"), "{page}");
    }
    let kb_page = get(format!("/kb/{kb}")).await;
    assert!(kb_page.contains("&#60;script&#62;alert(1) x.txt"), "{kb_page}");
    assert!(
        kb_page.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{kb_page}"
    );
    let search = get("/search?q=needle".into()).await;
    assert!(search.contains("&#60;script&#62;alert(1) x.txt"), "{search}");
    assert!(search.contains("searchable <mark>needle</mark> text"), "{search}");
    // Text typed into the search box comes back escaped too.
    let search = get("/search?q=%3Cscript%3Ex".into()).await;
    assert!(!search.contains("<script>x"), "{search}");
    s.stop().await;
}

async fn the_session_cookie_opens_only_read_only_api_routes(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let (cookie, _) = sign_in(&s).await;
    let resp = http
        .get(format!("{}/api/v1/me", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .post(format!("{}/api/v1/knowledge", s.base))
        .header(header::COOKIE, &cookie)
        .json(&serde_json::json!({"name": "via cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn pages_render_for_a_signed_in_user(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let http = client();
    let (cookie, _) = sign_in(&s).await;
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "Handbook").await;
    for (path, needle) in [
        ("/kb".to_owned(), "Handbook"),
        ("/kb/new".to_owned(), "New knowledge base"),
        (format!("/kb/{kb}"), "Upload a file"),
        (format!("/kb/{kb}/access"), "May read and search"),
        ("/search".to_owned(), "All knowledge bases"),
        ("/admin".to_owned(), "Free run slots"),
        ("/admin/users".to_owned(), "Signs in with"),
        ("/admin/keys".to_owned(), "New service key"),
        ("/keys".to_owned(), "New key"),
        ("/account".to_owned(), "Change password"),
        ("/static/app.js".to_owned(), "EventSource"),
        ("/static/app.css".to_owned(), "prefers-color-scheme: dark"),
    ] {
        let resp = http
            .get(format!("{}{path}", s.base))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{path}: {text}");
    }
    // A knowledge base that does not exist is a 404 page, not an error dump.
    let resp = http
        .get(format!("{}/kb/{}", s.base, uuid::Uuid::new_v4()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("Knowledge base not found"));
    s.stop().await;
}

fn with_onedrive() -> Options {
    Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        ..Options::default()
    }
}

async fn onedrive_kb(s: &TestServer, token: &str) -> String {
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(token),
            serde_json::json!({"name": "Drive", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Opens `/kb/{kb}/connect` as the popup does: the authorize URL it redirects to, and the
/// binding cookie it sets (the whole `Set-Cookie` value).
async fn open_connect_popup(
    s: &TestServer,
    http: &reqwest::Client,
    cookie: &str,
    csrf: &str,
    kb: &str,
) -> (String, String) {
    let resp = http
        .get(format!("{}/kb/{kb}/connect?csrf={csrf}", s.base))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let auth_url = resp.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let binding = crate::common::binding_cookies(resp.headers());
    assert_eq!(binding.len(), 1, "{binding:?}");
    (auth_url, binding[0].clone())
}

/// The popup's `/kb/{id}/connect` gives its browser the flow's binding cookie; the callback
/// connects only with it.
async fn the_connect_popup_binds_the_flow_to_its_browser(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let http = client();
    let (cookie, csrf) = sign_in(&s).await;
    let token = s.admin_token().await;
    let kb = onedrive_kb(&s, &token).await;
    let (auth_url, binding) = open_connect_popup(&s, &http, &cookie, &csrf, &kb).await;
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/api/v1/datasources/",
        "Max-Age=600",
    ] {
        assert!(binding.split("; ").any(|a| a == attr), "{attr}: {binding}");
    }
    // Another browser finishing this flow: the error page, and not connected.
    let (status, page, _) = s.consent(&auth_url, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("kbsync-auth-error"), "{page}");
    let connection = format!("/api/v1/knowledge/{kb}/connection");
    assert_eq!(
        s.get(&connection, Some(&token)).await.1["has_stored_token"],
        false
    );

    // The popup's own browser, with its cookie: connected.
    let (auth_url, binding) = open_connect_popup(&s, &http, &cookie, &csrf, &kb).await;
    let pair = binding.split(';').next().unwrap();
    let (status, page, _) = s.consent(&auth_url, Some(pair)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("kbsync-auth-success"), "{page}");
    assert_eq!(s.get(&connection, Some(&token)).await.1["has_stored_token"], true);
    s.stop().await;
}

/// Picking, adding and removing sources need manage access in the UI as in the API: a writer's
/// page shows none of those controls, and the routes refuse a writer even with a valid CSRF token.
async fn writers_get_no_source_controls_and_may_not_pick_add_or_remove_sources(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let http = client();
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (writer_id, _) = s.user(&admin, "writer@example.com").await;
    let kb = onedrive_kb(&s, &owner).await;
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/knowledge/{kb}/access"),
            Some(&owner),
            Some(serde_json::json!({"read": [], "write": [writer_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.connect(&owner, &kb).await;
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    let file = drive
        .put_file(&drive_id, "/Team/a.txt", b"alpha".to_vec())
        .unwrap();
    let item = serde_json::json!({"type": "file", "drive_id": drive_id, "item_id": file.id, "name": "a.txt", "path": "/Team/a.txt"});
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            Some(&owner),
            serde_json::json!({"datasource": "onedrive", "items": [item.clone()]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let source = body["sources"][0]["id"].as_str().unwrap().to_owned();

    let page_of = |cookie: String| {
        let http = http.clone();
        let url = format!("{}/kb/{kb}", s.base);
        async move {
            let resp = http.get(url).header(header::COOKIE, cookie).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        }
    };
    let remove_action = format!("/kb/{kb}/sources/{source}/remove");
    let (owner_cookie, _) = sign_in_as(&s, "owner@example.com").await;
    let page = page_of(owner_cookie).await;
    assert!(page.contains(&format!("href=\"/kb/{kb}/pick\"")), "{page}");
    assert!(page.contains(&remove_action), "{page}");

    let (cookie, csrf) = sign_in_as(&s, "writer@example.com").await;
    let page = page_of(cookie.clone()).await;
    assert!(!page.contains(&format!("/kb/{kb}/pick")), "{page}");
    assert!(!page.contains(&remove_action), "{page}");
    assert!(page.contains("a.txt"), "writers still see the sources: {page}");

    let resp = http
        .get(format!("{}/kb/{kb}/pick", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(format!("{}/kb/{kb}/sources", s.base))
        .header(header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("datasource", "onedrive"),
            ("item", &item.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(format!("{}{remove_action}", s.base))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (_, sources) = s
        .get(&format!("/api/v1/knowledge/{kb}/sources"), Some(&owner))
        .await;
    assert_eq!(sources["sources"].as_array().unwrap().len(), 1, "{sources}");
    s.stop().await;
}

/// The text of a page.
pub(crate) async fn page(s: &TestServer, cookie: &str, path: &str) -> (StatusCode, String) {
    let resp = client()
        .get(format!("{}{path}", s.base))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Posts a form with the session's cookie: the status, the `Location` (if any) and the body.
async fn submit(
    s: &TestServer,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let resp = client()
        .post(format!("{}{path}", s.base))
        .header(header::COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status(), location, resp.text().await.unwrap())
}

/// The text between `<code class="secret" data-testid="new-key">` and `</code>`.
fn new_key_in(page: &str) -> String {
    let marker = "data-testid=\"new-key\">";
    let start = page.find(marker).expect("a new key") + marker.len();
    page[start..start + page[start..].find('<').unwrap()].to_owned()
}

async fn the_keys_page_shows_a_new_key_once_and_revokes_it(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (cookie, csrf) = sign_in(&s).await;
    let (status, _, body) = submit(
        &s,
        &cookie,
        "/keys",
        &[
            ("csrf", &csrf),
            ("name", "assistant"),
            ("scope", "read"),
            ("expires_on", "2031-02-03"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = new_key_in(&body);
    assert!(key.starts_with("kbs_"), "{key}");
    let (status, me) = s.get("/api/v1/me", Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], ADMIN_EMAIL);

    let (status, list) = page(&s, &cookie, "/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("assistant") && list.contains("2031-02-03"),
        "{list}"
    );
    assert!(!list.contains(&key), "the key is shown again");
    assert!(list.contains(&key[..12]), "no prefix: {list}");

    // Bad input is shown beside the form, and the key is not made.
    let (status, _, body) = submit(
        &s,
        &cookie,
        "/keys",
        &[
            ("csrf", &csrf),
            ("name", "old"),
            ("scope", "read"),
            ("expires_on", "2000-01-01"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("expires_at: must be in the future"), "{body}");

    let token = s.admin_token().await;
    let (_, keys) = s.get("/api/v1/me/api-keys", Some(&token)).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1, "{keys}");
    let id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, location, _) = submit(&s, &cookie, &format!("/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/keys?revoked=1");
    assert_eq!(s.get("/api/v1/me", Some(&key)).await.0, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn a_disabled_users_cookie_opens_nothing(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (alice_id, _) = s.user(&admin, "alice@example.com").await;
    let (cookie, csrf) = sign_in_as(&s, "alice@example.com").await;
    assert_eq!(page(&s, &cookie, "/kb").await.0, StatusCode::OK);

    let (status, body) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{alice_id}"),
            Some(&admin),
            Some(serde_json::json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for path in ["/kb", "/keys", "/account", "/search?q=x"] {
        assert_eq!(page(&s, &cookie, path).await.0, StatusCode::SEE_OTHER, "{path}");
    }
    let (status, location, _) = submit(&s, &cookie, "/kb", &[("csrf", &csrf), ("name", "x")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.starts_with("/login"), "{location}");
    // The API's read-only routes refuse the cookie too.
    let resp = client()
        .get(format!("{}/api/v1/me", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn only_admins_see_the_admin_pages_and_their_forms_act(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (bob_id, bob) = s.user(&admin, "bob@example.com").await;
    let (bob_cookie, bob_csrf) = sign_in_as(&s, "bob@example.com").await;
    for path in ["/admin/users", "/admin/keys"] {
        assert_eq!(
            page(&s, &bob_cookie, path).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let (status, _, _) = submit(
        &s,
        &bob_cookie,
        &format!("/admin/users/{bob_id}/role"),
        &[("csrf", &bob_csrf), ("role", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, StatusCode::FORBIDDEN);

    let (cookie, csrf) = sign_in(&s).await;
    let (status, users) = page(&s, &cookie, "/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(users.contains("bob@example.com"), "{users}");
    let (status, location, _) = submit(
        &s,
        &cookie,
        &format!("/admin/users/{bob_id}/role"),
        &[("csrf", &csrf), ("role", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/admin/users?done=role");
    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, StatusCode::OK);
    let (_, done) = page(&s, &cookie, &location).await;
    assert!(done.contains("Role changed."), "{done}");

    let (status, _, _) = submit(
        &s,
        &cookie,
        &format!("/admin/users/{bob_id}/disabled"),
        &[("csrf", &csrf), ("disabled", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(s.get("/api/v1/me", Some(&bob)).await.0, StatusCode::UNAUTHORIZED);

    // A service key: shown once, with the account to grant knowledge bases to.
    let (status, _, body) = submit(
        &s,
        &cookie,
        "/admin/keys",
        &[
            ("csrf", &csrf),
            ("name", "assistant"),
            ("scope", "read"),
            ("expires_on", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = new_key_in(&body);
    assert!(body.contains("service.kbsync.invalid"), "{body}");
    let (status, me) = s.get("/api/v1/me", Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (_, list) = page(&s, &cookie, "/admin/keys").await;
    assert!(
        list.contains("assistant") && list.contains("(service)") && !list.contains(&key),
        "{list}"
    );

    // The service key may be allowed to assert Open WebUI users, and stopped again.
    assert!(!list.contains("data-testid=\"asserts-users\""), "{list}");
    let (_, keys) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    let key_id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, location, _) = submit(
        &s,
        &cookie,
        &format!("/admin/keys/{key_id}/assertion"),
        &[("csrf", &csrf), ("trusted", "on")],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/admin/keys")
    );
    let (_, list) = page(&s, &cookie, "/admin/keys").await;
    assert!(list.contains("data-testid=\"asserts-users\""), "{list}");
    let (_, keys) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    assert_eq!(keys["items"][0]["trusted_user_assertion"], true);
    let (status, _, _) = submit(
        &s,
        &cookie,
        &format!("/admin/keys/{key_id}/assertion"),
        &[("csrf", &csrf), ("trusted", "off")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, keys) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    assert_eq!(keys["items"][0]["trusted_user_assertion"], false);

    // The last enabled admin stays: the page says why.
    let (_, me) = s.get("/api/v1/me", Some(&admin)).await;
    let admin_id = me["id"].as_str().unwrap();
    let (status, _, body) = submit(
        &s,
        &cookie,
        &format!("/admin/users/{admin_id}/role"),
        &[("csrf", &csrf), ("role", "user")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("admin"), "{body}");

    let (status, location, _) = submit(
        &s,
        &cookie,
        &format!("/admin/users/{bob_id}/delete"),
        &[("csrf", &csrf), ("transfer_to", admin_id)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/admin/users?done=deleted");
    let (_, users) = page(&s, &cookie, "/admin/users").await;
    assert!(!users.contains("bob@example.com"), "{users}");
    s.stop().await;
}

async fn the_account_page_changes_the_password_and_ends_other_sessions(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    s.user(&admin, "alice@example.com").await;
    let (cookie, csrf) = sign_in_as(&s, "alice@example.com").await;
    let (other_cookie, _) = sign_in_as(&s, "alice@example.com").await;

    let (status, _, body) = submit(
        &s,
        &cookie,
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current_password", "wrong one!"),
            ("new_password", "brand new password"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("current_password"), "{body}");

    let (status, location, _) = submit(
        &s,
        &cookie,
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "brand new password"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/account?changed=1");
    let (status, done) = page(&s, &cookie, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("Password changed"), "{done}");
    assert_eq!(page(&s, &other_cookie, "/kb").await.0, StatusCode::SEE_OTHER);
    s.login("alice@example.com", "brand new password").await;
    s.stop().await;
}

/// Records finished runs of `kb` in the store, as the scheduler would have: over the last hours
/// of the server's clock, each started some time after it was due, one that completed with
/// errors and one that failed among them. Returns how many.
pub(crate) async fn record_runs(s: &TestServer, kb: &str) -> usize {
    use chrono::Duration;
    use kbsync_core::{Clock, SyncFailure, SyncRunOutcome, SyncStatus, SyncTrigger};
    let kb: uuid::Uuid = kb.parse().unwrap();
    let now = s.clock.now();
    // (hours ago, status, files brought in, removed, seconds it took, seconds late)
    let runs = [
        (20, SyncStatus::Completed, 48, 0, 95, 4),
        (17, SyncStatus::Completed, 6, 2, 21, 3),
        (14, SyncStatus::CompletedWithErrors, 11, 0, 40, 12),
        (11, SyncStatus::Completed, 0, 0, 3, 2),
        (8, SyncStatus::Failed, 0, 0, 7, 65),
        (6, SyncStatus::Completed, 23, 4, 52, 8),
        (3, SyncStatus::Completed, 9, 1, 18, 5),
        (1, SyncStatus::Completed, 2, 0, 6, 3),
    ];
    for (ago, status, processed, deleted, took, late) in runs {
        let id = uuid::Uuid::new_v4();
        let started = now - Duration::hours(ago);
        s.state
            .store
            .create_sync_run(
                id,
                kb,
                SyncTrigger::Scheduled,
                Some(started - Duration::seconds(late)),
                started,
            )
            .await
            .unwrap();
        let failures: Vec<SyncFailure> = (status == SyncStatus::CompletedWithErrors)
            .then(|| SyncFailure {
                item_id: "broken".into(),
                name: "Broken <scan>.pdf".into(),
                reason: "the PDF is damaged".into(),
            })
            .into_iter()
            .collect();
        let outcome = SyncRunOutcome {
            status,
            processed,
            failed: failures.len() as u64,
            deleted,
            skipped: 0,
            quarantined: 0,
            total_found: processed + failures.len() as u64,
            failures,
            phases: None,
        };
        s.state
            .store
            .finish_sync_run(id, &outcome, started + Duration::seconds(took))
            .await
            .unwrap();
    }
    runs.len()
}

/// A knowledge base's page charts its runs (files changed and duration, failures marked) and the
/// admin page the day's activity (files brought in and queue lag per hour), each as an image with
/// a title and a description, and with a table of the numbers; before any run both say so in a
/// sentence instead of drawing an empty chart.
async fn the_kb_and_admin_pages_chart_the_runs_with_their_numbers(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let http = client();
    let (cookie, _) = sign_in(&s).await;
    let token = s.admin_token().await;
    let kb = onedrive_kb(&s, &token).await;
    let page = |path: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        let base = s.base.clone();
        async move {
            let resp = http
                .get(format!("{base}{path}"))
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            resp.text().await.unwrap()
        }
    };
    let admin = page("/admin".into()).await;
    assert!(
        admin.contains("<p class=\"empty\">No sync run started in the last 24 hours.</p>"),
        "{admin}"
    );
    assert!(!admin.contains("<svg class=\"chart\""), "{admin}");
    let kb_page = page(format!("/kb/{kb}")).await;
    assert!(kb_page.contains("No run yet."), "{kb_page}");
    assert!(!kb_page.contains("<svg class=\"chart\""), "{kb_page}");

    let runs = record_runs(&s, &kb).await;

    let kb_page = page(format!("/kb/{kb}")).await;
    assert_eq!(kb_page.matches("<svg class=\"chart\"").count(), 2, "{kb_page}");
    for needle in [
        "role=\"img\"",
        "<title id=\"run-chart-0-title\">Files changed per run</title>",
        "<title id=\"run-chart-1-title\">Duration per run</title>",
        &format!("{runs} runs from "),
        "1 failed (marked with a cross)",
        "class=\"bar failed\"",
        "class=\"bar partial\"",
        "class=\"mark-failed\"",
        "<summary>The runs in numbers</summary>",
        "<th scope=\"col\">Files changed</th>",
        // The first run: 48 files in 95 s.
        "<td>48</td><td>0</td><td>95.0 s</td>",
    ] {
        assert!(kb_page.contains(needle), "{needle}: {kb_page}");
    }
    // The list under the chart still names the failed file, escaped.
    assert!(kb_page.contains("Broken &#60;scan&#62;.pdf"), "{kb_page}");

    let admin = page("/admin".into()).await;
    assert_eq!(admin.matches("<svg class=\"chart\"").count(), 2, "{admin}");
    for needle in [
        "Files brought in per hour, all knowledge bases",
        "Queue lag per hour: the longest wait of a due run",
        &format!("{runs} runs from "),
        "1 run failed (their hours are marked with a cross)",
        "the longest wait was 65.0 s",
        "class=\"bar failed\"",
        "<summary>The hours with runs, in numbers (UTC)</summary>",
        "<th scope=\"col\">Longest lag</th>",
    ] {
        assert!(admin.contains(needle), "{needle}: {admin}");
    }
    s.stop().await;
}
