use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn example_config_parses_and_resolves_to_the_defaults() {
    let file: FileConfig = toml::from_str(EXAMPLE).unwrap();
    let from_example = Settings::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
    let defaults = Settings::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert_eq!(from_example.bind, defaults.bind);
    assert_eq!(from_example.data_dir, defaults.data_dir);
    assert_eq!(from_example.public_url, defaults.public_url);
    assert_eq!(from_example.max_upload_bytes, 100 * 1024 * 1024);
    assert_eq!((from_example.chunk_size, from_example.chunk_overlap), (1000, 100));
    assert!(from_example.database_url.starts_with("sqlite://"));
    assert_eq!(
        (
            from_example.login_address_max_failures,
            from_example.login_address_window_minutes,
            from_example.login_failure_retention_hours,
        ),
        (
            defaults.login_address_max_failures,
            defaults.login_address_window_minutes,
            defaults.login_failure_retention_hours,
        )
    );
    assert_eq!(
        (
            from_example.housekeeping_minutes,
            from_example.run_retention_days,
            from_example.run_keep_latest,
            from_example.blob_grace_minutes,
        ),
        (60, 90, 20, 60)
    );
    assert_eq!(
        (
            defaults.housekeeping_minutes,
            defaults.run_retention_days,
            defaults.run_keep_latest,
            defaults.blob_grace_minutes,
        ),
        (60, 90, 20, 60)
    );
    assert_eq!(from_example.reauth_grace_hours, 72);
    assert_eq!(defaults.reauth_grace_hours, 72);
    assert_eq!(
        (from_example.extract_isolation, from_example.extract_memory_mb),
        (ExtractIsolation::Process, 1024)
    );
    assert_eq!(
        (defaults.extract_isolation, defaults.extract_memory_mb),
        (ExtractIsolation::Process, 1024)
    );
    assert_eq!((from_example.api_concurrency, defaults.api_concurrency), (4, 4));
}

#[test]
fn api_concurrency_comes_from_the_environment_and_must_be_positive() {
    let settings = Settings::resolve(
        &Flags::default(),
        &env_of(&[("KBSYNC_API_CONCURRENCY", "16")]),
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(settings.api_concurrency, 16);
    let refused = Settings::resolve(
        &Flags::default(),
        &env_of(&[("KBSYNC_API_CONCURRENCY", "0")]),
        FileConfig::default(),
    );
    assert!(refused.is_err(), "0 would admit no read at all");
}

#[test]
fn extraction_isolation_and_memory_come_from_the_environment() {
    let settings = Settings::resolve(
        &Flags::default(),
        &env_of(&[
            ("KBSYNC_EXTRACT_ISOLATION", "thread"),
            ("KBSYNC_EXTRACT_MEMORY_MB", "512"),
        ]),
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(
        (settings.extract_isolation, settings.extract_memory_mb),
        (ExtractIsolation::Thread, 512)
    );
}

#[test]
fn reauth_grace_hours_come_from_the_environment_and_must_be_positive() {
    let s = Settings::resolve(
        &Flags::default(),
        &env_of(&[("KBSYNC_REAUTH_GRACE_HOURS", "12")]),
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(s.reauth_grace_hours, 12);
    let file = FileConfig {
        reauth_grace_hours: Some(24),
        ..Default::default()
    };
    assert_eq!(
        Settings::resolve(&Flags::default(), &env_of(&[]), file)
            .unwrap()
            .reauth_grace_hours,
        24
    );
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let file = FileConfig {
        bind: Some("127.0.0.1:1".into()),
        chunk_size: Some(500),
        ..Default::default()
    };
    let env = env_of(&[("KBSYNC_BIND", "127.0.0.1:2"), ("KBSYNC_CHUNK_SIZE", "700")]);
    let s = Settings::resolve(&Flags::default(), &env, file).unwrap();
    assert_eq!(s.bind.port(), 2);
    assert_eq!(s.chunk_size, 700);
    let flags = Flags {
        bind: Some("127.0.0.1:3".into()),
        ..Default::default()
    };
    let s = Settings::resolve(&flags, &env, FileConfig::default()).unwrap();
    assert_eq!(s.bind.port(), 3);
    assert_eq!(s.public_url.as_str(), "http://127.0.0.1:3/");
}

#[test]
fn bad_values_name_the_setting() {
    let cases = [
        ("KBSYNC_BIND", "nonsense"),
        ("KBSYNC_DATABASE_URL", "mysql://x"),
        ("KBSYNC_SECRET_KEY", "short"),
        ("KBSYNC_PUBLIC_URL", "ftp://x"),
        ("KBSYNC_MAX_UPLOAD_MB", "lots"),
        ("KBSYNC_MAX_UPLOAD_MB", "0"),
        ("KBSYNC_CHUNK_SIZE", "10"),
        ("KBSYNC_CHUNK_OVERLAP", "900"),
        ("KBSYNC_LOG_FORMAT", "xml"),
        ("KBSYNC_ADMIN_EMAIL", "a@b.c"),
        ("KBSYNC_LOGIN_ADDRESS_MAX_FAILURES", "0"),
        ("KBSYNC_LOGIN_ADDRESS_WINDOW_MINUTES", "0"),
        ("KBSYNC_LOGIN_FAILURE_RETENTION_HOURS", "0"),
        ("KBSYNC_HOUSEKEEPING_MINUTES", "0"),
        ("KBSYNC_RUN_RETENTION_DAYS", "-1"),
        ("KBSYNC_RUN_KEEP_LATEST", "many"),
        ("KBSYNC_BLOB_GRACE_MINUTES", "0"),
        ("KBSYNC_REAUTH_GRACE_HOURS", "0"),
        ("KBSYNC_REAUTH_GRACE_HOURS", "soon"),
        ("KBSYNC_EXTRACT_ISOLATION", "sandbox"),
        ("KBSYNC_EXTRACT_MEMORY_MB", "10"),
        ("KBSYNC_EXTRACT_MEMORY_MB", "much"),
    ];
    for (var, value) in cases {
        let err = Settings::resolve(&Flags::default(), &env_of(&[(var, value)]), FileConfig::default())
            .unwrap_err();
        assert!(err.0.contains(var), "{var}={value}: {err}");
    }
}

#[test]
fn onedrive_urls_derive_from_authority_and_tenant_unless_overridden() {
    let env = env_of(&[
        ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
        ("KBSYNC_ONEDRIVE_TENANT_ID", "contoso"),
    ]);
    let s = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    let od = s.onedrive.clone().unwrap();
    assert_eq!(
        od.authorize_url,
        "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize"
    );
    assert_eq!(
        od.token_url,
        "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    );
    assert_eq!(od.graph_url, DEFAULT_GRAPH_URL);
    assert_eq!(od.client_secret, None);
    assert_eq!(
        s.redirect_uri(kbsync_core::datasource::DatasourceKind::OneDrive),
        "http://127.0.0.1:8080/api/v1/datasources/onedrive/auth/callback"
    );

    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "s3cret\n").unwrap();
    let env = env_of(&[
        ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
        (
            "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE",
            secret_path.to_str().unwrap(),
        ),
        ("KBSYNC_ONEDRIVE_TOKEN_URL", "https://auth.example.com/token/"),
    ]);
    let od = Settings::resolve(&Flags::default(), &env, FileConfig::default())
        .unwrap()
        .onedrive
        .unwrap();
    assert_eq!(od.client_secret.as_deref(), Some("s3cret"));
    assert_eq!(od.token_url, "https://auth.example.com/token");
    assert!(!format!("{od:?}").contains("s3cret"));
}

#[test]
fn bad_onedrive_values_name_the_setting() {
    for (var, value) in [
        ("KBSYNC_ONEDRIVE_GRAPH_URL", "graph"),
        ("KBSYNC_ONEDRIVE_SCOPES", "Files.Read.All"),
        ("KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE", "/nonexistent/secret"),
    ] {
        let env = env_of(&[("KBSYNC_ONEDRIVE_CLIENT_ID", "app"), (var, value)]);
        let err = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap_err();
        assert!(err.0.contains(var), "{var}: {err}");
    }
}

#[test]
fn gdrive_defaults_to_googles_endpoints_and_its_redirect_uri_follows_the_registry_name() {
    let s = Settings::resolve(
        &Flags::default(),
        &env_of(&[
            ("KBSYNC_GDRIVE_CLIENT_ID", "app.apps.googleusercontent.com"),
            ("KBSYNC_PUBLIC_URL", "https://kbsync.example.com/"),
        ]),
        FileConfig::default(),
    )
    .unwrap();
    let gd = s.gdrive.clone().unwrap();
    assert_eq!(gd.client_id, "app.apps.googleusercontent.com");
    assert_eq!(gd.client_secret, None);
    assert_eq!(gd.authorize_url, "https://accounts.google.com/o/oauth2/v2/auth");
    assert_eq!(gd.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(gd.api_url, "https://www.googleapis.com/drive/v3");
    assert_eq!(
        (
            gd.authorize_url.as_str(),
            gd.token_url.as_str(),
            gd.api_url.as_str()
        ),
        (
            kbsync_gdrive::DEFAULT_AUTHORIZE_URL,
            kbsync_gdrive::DEFAULT_TOKEN_URL,
            kbsync_gdrive::DEFAULT_API_URL
        )
    );
    assert_eq!(
        s.redirect_uri(kbsync_core::datasource::DatasourceKind::GDrive),
        "https://kbsync.example.com/api/v1/datasources/gdrive/auth/callback"
    );
    // Without a client id Google Drive is off, whatever else is set.
    let off = Settings::resolve(
        &Flags::default(),
        &env_of(&[("KBSYNC_GDRIVE_CLIENT_SECRET", "s")]),
        FileConfig::default(),
    )
    .unwrap();
    assert!(off.gdrive.is_none());
}

#[test]
fn gdrive_secret_and_urls_come_from_the_environment_or_the_file_and_the_secret_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "GOCSPX-s3cret\n").unwrap();
    let env = env_of(&[
        ("KBSYNC_GDRIVE_CLIENT_ID", "app"),
        ("KBSYNC_GDRIVE_CLIENT_SECRET_FILE", secret_path.to_str().unwrap()),
        (
            "KBSYNC_GDRIVE_AUTHORIZE_URL",
            "http://127.0.0.1:9000/o/oauth2/v2/auth",
        ),
        ("KBSYNC_GDRIVE_TOKEN_URL", "http://127.0.0.1:9000/token/"),
        ("KBSYNC_GDRIVE_API_URL", "http://127.0.0.1:9000/drive/v3"),
    ]);
    let gd = Settings::resolve(&Flags::default(), &env, FileConfig::default())
        .unwrap()
        .gdrive
        .unwrap();
    assert_eq!(gd.client_secret.as_deref(), Some("GOCSPX-s3cret"));
    assert_eq!(gd.authorize_url, "http://127.0.0.1:9000/o/oauth2/v2/auth");
    assert_eq!(gd.token_url, "http://127.0.0.1:9000/token");
    assert_eq!(gd.api_url, "http://127.0.0.1:9000/drive/v3");
    assert!(!format!("{gd:?}").contains("s3cret"), "{gd:?}");

    // The secret in the environment wins over the file's; the file's table gives the rest.
    let file: FileConfig = toml::from_str(&format!(
        "[gdrive]\nclient_id = \"from-file\"\nclient_secret_file = {:?}\napi_url = \"http://drive.internal/drive/v3\"\n",
        secret_path.to_str().unwrap()
    ))
    .unwrap();
    let gd = Settings::resolve(
        &Flags::default(),
        &env_of(&[("KBSYNC_GDRIVE_CLIENT_SECRET", "from-env")]),
        file,
    )
    .unwrap()
    .gdrive
    .unwrap();
    assert_eq!(gd.client_id, "from-file");
    assert_eq!(gd.client_secret.as_deref(), Some("from-env"));
    assert_eq!(gd.api_url, "http://drive.internal/drive/v3");
    assert_eq!(gd.token_url, kbsync_gdrive::DEFAULT_TOKEN_URL);
}

#[test]
fn bad_gdrive_values_name_the_setting() {
    for (var, value) in [
        ("KBSYNC_GDRIVE_AUTHORIZE_URL", "accounts.google.com"),
        ("KBSYNC_GDRIVE_TOKEN_URL", "ftp://oauth2.googleapis.com/token"),
        ("KBSYNC_GDRIVE_API_URL", "drive"),
        ("KBSYNC_GDRIVE_CLIENT_SECRET_FILE", "/nonexistent/secret"),
    ] {
        let env = env_of(&[("KBSYNC_GDRIVE_CLIENT_ID", "app"), (var, value)]);
        let err = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap_err();
        assert!(err.0.contains(var), "{var}: {err}");
    }
    // The client secret is not a file setting.
    let err = toml::from_str::<FileConfig>("[gdrive]\nclient_secret = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("client_secret"), "{err}");
}

#[test]
fn example_and_packaged_configs_name_googles_endpoints() {
    for (which, text) in [
        ("example", EXAMPLE),
        ("debian", include_str!("../../../../packaging/debian/kbsync.toml")),
    ] {
        let file: FileConfig = toml::from_str(text).unwrap();
        let table = file
            .gdrive
            .unwrap_or_else(|| panic!("{which}: no [gdrive] table"));
        assert_eq!(
            table.client_id, None,
            "{which}: Google Drive is off until configured"
        );
        for (value, default) in [
            (table.authorize_url, kbsync_gdrive::DEFAULT_AUTHORIZE_URL),
            (table.token_url, kbsync_gdrive::DEFAULT_TOKEN_URL),
            (table.api_url, kbsync_gdrive::DEFAULT_API_URL),
        ] {
            if let Some(value) = value {
                assert_eq!(value, default, "{which}");
            }
        }
    }
    assert!(EXAMPLE.contains("/api/v1/datasources/gdrive/auth/callback"));
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let err = toml::from_str::<FileConfig>("bnd = \"x\"").unwrap_err();
    assert!(err.to_string().contains("bnd"), "{err}");
}

#[test]
fn app_only_with_a_certificate_needs_an_organisation_tenant_and_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, msgraph_emulator::test_certificates::APP_CERT_PEM).unwrap();
    std::fs::write(&key, msgraph_emulator::test_certificates::APP_KEY_PEM).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let base = [
        ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
        ("KBSYNC_ONEDRIVE_APP_ONLY", "true"),
        ("KBSYNC_ONEDRIVE_TENANT_ID", "contoso.onmicrosoft.com"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = base.to_vec();
        pairs.extend_from_slice(extra);
        Settings::resolve(&Flags::default(), &env_of(&pairs), FileConfig::default())
    };
    let od = with(&[
        ("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", cert),
        ("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", key),
    ])
    .unwrap()
    .onedrive
    .unwrap();
    let app = od.app_only.clone().unwrap();
    assert_eq!(app.tenant, "contoso.onmicrosoft.com");
    assert_eq!(
        app.token_url,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert!(matches!(app.credential, AppOnlyCredential::Certificate { .. }));
    assert!(!format!("{od:?}").contains("PRIVATE KEY"), "{od:?}");

    // The secret alone works too (with a warning at start-up about SharePoint site groups).
    let app = with(&[("KBSYNC_ONEDRIVE_CLIENT_SECRET", "s3cret")])
        .unwrap()
        .onedrive
        .unwrap()
        .app_only
        .unwrap();
    assert!(matches!(app.credential, AppOnlyCredential::Secret(_)));

    for (extra, names) in [
        (vec![], "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE"),
        (
            vec![
                ("KBSYNC_ONEDRIVE_TENANT_ID", "common"),
                ("KBSYNC_ONEDRIVE_CLIENT_SECRET", "s"),
            ],
            "KBSYNC_ONEDRIVE_TENANT_ID",
        ),
        (
            vec![("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", cert)],
            "KBSYNC_ONEDRIVE_CLIENT_KEY_FILE",
        ),
        (
            vec![
                ("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", cert),
                ("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "cannot read /nonexistent/key.pem",
        ),
        (
            vec![
                ("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", key),
                ("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", key),
            ],
            "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE",
        ),
    ] {
        let err = with(&extra).unwrap_err();
        assert!(err.0.contains(names), "{extra:?}: {err}");
    }
    // The certificate files without app-only access are a mistake worth stopping for.
    let env = env_of(&[
        ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
        ("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", cert),
        ("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", key),
    ]);
    let err = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap_err();
    assert!(err.0.contains("KBSYNC_ONEDRIVE_APP_ONLY"), "{err}");
    // And from the file.
    let file: FileConfig = toml::from_str(&format!(
        "[onedrive]\nclient_id = \"app\"\ntenant_id = \"contoso\"\napp_only = true\nclient_cert_file = {cert:?}\nclient_key_file = {key:?}\n"
    ))
    .unwrap();
    let od = Settings::resolve(&Flags::default(), &env_of(&[]), file)
        .unwrap()
        .onedrive
        .unwrap();
    assert!(od.app_only.is_some());
}

#[test]
fn the_default_scopes_are_the_datasources_own() {
    assert_eq!(DEFAULT_SCOPES, kbsync_msgraph::DEFAULT_SCOPES.join(" "));
}

#[test]
fn oidc_settings_need_a_client_and_a_secret_and_keep_the_issuer_exactly() {
    let with =
        |pairs: &[(&str, &str)]| Settings::resolve(&Flags::default(), &env_of(pairs), FileConfig::default());
    let issuer = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
    let oidc = with(&[
        ("KBSYNC_OIDC_ISSUER", issuer),
        ("KBSYNC_OIDC_CLIENT_ID", "app"),
        ("KBSYNC_OIDC_CLIENT_SECRET", "s3cret"),
        ("KBSYNC_OIDC_ALLOWED_DOMAINS", "Contoso.com, @fabrikam.example"),
        ("KBSYNC_OIDC_ADMIN_GROUPS", "g1,g2"),
    ])
    .unwrap()
    .oidc
    .unwrap();
    assert_eq!(oidc.issuer, issuer);
    assert_eq!(oidc.scopes, ["openid", "email", "profile"]);
    assert_eq!(oidc.allowed_domains, ["contoso.com", "fabrikam.example"]);
    assert_eq!(oidc.admin_groups, ["g1", "g2"]);
    assert!(!format!("{oidc:?}").contains("s3cret"));
    let slash = with(&[
        ("KBSYNC_OIDC_ISSUER", "https://id.example.org/"),
        ("KBSYNC_OIDC_CLIENT_ID", "app"),
        ("KBSYNC_OIDC_CLIENT_SECRET", "s"),
    ])
    .unwrap();
    assert_eq!(slash.oidc.unwrap().issuer, "https://id.example.org/");
    assert!(slash.password_login);

    for (pairs, names) in [
        (vec![("KBSYNC_OIDC_ISSUER", issuer)], "KBSYNC_OIDC_CLIENT_ID"),
        (
            vec![("KBSYNC_OIDC_ISSUER", issuer), ("KBSYNC_OIDC_CLIENT_ID", "app")],
            "KBSYNC_OIDC_CLIENT_SECRET",
        ),
        (
            vec![
                ("KBSYNC_OIDC_ISSUER", "not a url"),
                ("KBSYNC_OIDC_CLIENT_ID", "app"),
                ("KBSYNC_OIDC_CLIENT_SECRET", "s"),
            ],
            "KBSYNC_OIDC_ISSUER",
        ),
        (
            vec![
                ("KBSYNC_OIDC_ISSUER", issuer),
                ("KBSYNC_OIDC_CLIENT_ID", "app"),
                ("KBSYNC_OIDC_CLIENT_SECRET_FILE", "/nonexistent/secret"),
            ],
            "cannot read /nonexistent/secret",
        ),
        (
            vec![
                ("KBSYNC_OIDC_ISSUER", issuer),
                ("KBSYNC_OIDC_CLIENT_ID", "app"),
                ("KBSYNC_OIDC_CLIENT_SECRET", "s"),
                ("KBSYNC_OIDC_ALLOWED_DOMAINS", "localhost"),
            ],
            "KBSYNC_OIDC_ALLOWED_DOMAINS",
        ),
        (vec![("KBSYNC_PASSWORD_LOGIN", "false")], "KBSYNC_OIDC_ISSUER"),
    ] {
        let err = with(&pairs).unwrap_err();
        assert!(err.0.contains(names), "{pairs:?}: {err}");
    }
    let oidc_only = with(&[
        ("KBSYNC_OIDC_ISSUER", issuer),
        ("KBSYNC_OIDC_CLIENT_ID", "app"),
        ("KBSYNC_OIDC_CLIENT_SECRET", "s"),
        ("KBSYNC_PASSWORD_LOGIN", "false"),
    ])
    .unwrap();
    assert!(!oidc_only.password_login);
}

#[test]
fn openwebui_settings_need_an_api_key_that_is_never_shown_and_links_default_to_the_url() {
    let with =
        |pairs: &[(&str, &str)]| Settings::resolve(&Flags::default(), &env_of(pairs), FileConfig::default());
    assert!(with(&[]).unwrap().openwebui.is_none());
    let o = with(&[
        ("KBSYNC_OPENWEBUI_URL", "http://owui.internal:8080/"),
        ("KBSYNC_OPENWEBUI_API_KEY", "sk-0123secret"),
    ])
    .unwrap()
    .openwebui
    .unwrap();
    assert_eq!(o.url, "http://owui.internal:8080");
    assert_eq!(o.public_url, "http://owui.internal:8080");
    assert_eq!(o.api_key, "sk-0123secret");
    assert_eq!((o.upload_concurrency, o.processing_timeout_secs), (4, 600));
    assert!(!format!("{o:?}").contains("sk-0123secret"));
    let public = with(&[
        ("KBSYNC_OPENWEBUI_URL", "http://owui.internal:8080"),
        ("KBSYNC_OPENWEBUI_API_KEY", "k"),
        ("KBSYNC_OPENWEBUI_PUBLIC_URL", "https://chat.example.com"),
        ("KBSYNC_OPENWEBUI_UPLOAD_CONCURRENCY", "8"),
    ])
    .unwrap()
    .openwebui
    .unwrap();
    assert_eq!(public.public_url, "https://chat.example.com");
    assert_eq!(public.upload_concurrency, 8);

    for (pairs, names) in [
        (
            vec![("KBSYNC_OPENWEBUI_URL", "http://owui:8080")],
            "KBSYNC_OPENWEBUI_API_KEY",
        ),
        (
            vec![
                ("KBSYNC_OPENWEBUI_URL", "owui:8080"),
                ("KBSYNC_OPENWEBUI_API_KEY", "k"),
            ],
            "KBSYNC_OPENWEBUI_URL",
        ),
        (
            vec![
                ("KBSYNC_OPENWEBUI_URL", "http://owui:8080"),
                ("KBSYNC_OPENWEBUI_API_KEY", "k"),
                ("KBSYNC_OPENWEBUI_UPLOAD_CONCURRENCY", "0"),
            ],
            "KBSYNC_OPENWEBUI_UPLOAD_CONCURRENCY",
        ),
    ] {
        let err = with(&pairs).unwrap_err().to_string();
        assert!(err.contains(names), "{err}");
        assert!(!err.contains("sk-"), "{err}");
    }
}

#[test]
fn debian_package_config_parses_and_puts_the_data_in_the_state_directory() {
    let packaged = include_str!("../../../../packaging/debian/kbsync.toml");
    let file: FileConfig = toml::from_str(packaged).unwrap();
    let settings = Settings::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
    assert_eq!(settings.data_dir, std::path::PathBuf::from("/var/lib/kbsync"));
    assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.database_url, "sqlite:///var/lib/kbsync/kbsync.sqlite");
}
