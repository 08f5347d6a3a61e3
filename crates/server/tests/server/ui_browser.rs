//! The web UI end to end in a real browser: headless Chromium driven through chromedriver
//! (WebDriver), against a kbsync server and the in-process Graph emulator.
//!
//! sign in → create a knowledge base → connect through the emulator's consent in the popup →
//! pick a folder → the progress bar reaches "Completed" → search finds a phrase of a synced
//! document → an API key made on its page opens the API → the emulator revokes the refresh token
//! → the list shows "Re-authorisation required" → reconnecting clears it. Takes the screenshots in
//! docs/screenshots/.
//!
//! Needs `chromedriver` and `chromium` on PATH (Debian: `chromium-driver`, `chromium`; `.ci/run`
//! installs them). Without them the test is skipped with a loud message, except under CI (the
//! `CI` variable set), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::{ADMIN_EMAIL, Db, GDriveTest, OneDriveTest, Options, PASSWORD, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use msgraph_emulator::{FaultAction, FaultRule};

/// Longest wait for anything the browser shows.
const DEADLINE: Duration = Duration::from_secs(60);
/// The phrase the search must find, from a synced document.
const PHRASE: &str = "quarterly zebra migration";

/// chromedriver as a child process, killed when the test ends however it ends.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn start_driver() -> Option<Driver> {
    let Some(chromedriver) = on_path("chromedriver") else {
        if std::env::var_os("CI").is_some() {
            panic!("chromedriver is not installed, and CI is set: the browser test must run in CI");
        }
        eprintln!(
            "\n\n*** SKIPPED: ui_browser needs `chromedriver` and `chromium` on PATH \
             (Debian: apt-get install chromium chromium-driver; .ci/run installs them) ***\n"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(driver)
}

/// A browser at desktop size in light mode, or at phone size in dark mode.
async fn browser(driver: &Driver, phone_dark: bool) -> Client {
    if phone_dark {
        browser_with(driver, "390,844", true).await
    } else {
        browser_with(driver, "1280,900", false).await
    }
}

/// A browser with a window of `size` ("width,height"), in dark mode or light.
async fn browser_with(driver: &Driver, size: &str, dark: bool) -> Client {
    let window = format!("--window-size={size}");
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        window.as_str(),
    ];
    if dark {
        args.extend(["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]);
    }
    let mut chrome = serde_json::json!({ "args": args });
    if let Some(binary) = on_path("chromium") {
        chrome["binary"] = serde_json::Value::String(binary.display().to_string());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session")
}

/// Waits until an element matching the XPath is present. A look-up that fails for another reason
/// than "not there yet" is retried too: a page that navigates while it is being searched (as the
/// knowledge base list does when the connect popup reports back) aborts the look-up in progress.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn wait_for(c: &Client, xpath: &str) -> fantoccini::elements::Element {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last_error = match c.find(Locator::XPath(xpath)).await {
            Ok(element) => return element,
            Err(e) => e,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {xpath}: {last_error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads `url` until an element matching the XPath is present (for server-rendered state).
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn reload_until(c: &Client, url: &str, xpath: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        c.goto(url).await.unwrap();
        if c.find(Locator::XPath(xpath)).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never showed {xpath}: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    save_screenshot(name, c.screenshot().await.unwrap());
}

/// A screenshot of one element only (a chart), scrolled into view first.
async fn element_screenshot(c: &Client, css: &str, name: &str) {
    let element = c.find(Locator::Css(css)).await.unwrap();
    c.execute(
        "arguments[0].scrollIntoView({block: 'center'});",
        vec![serde_json::to_value(&element).unwrap()],
    )
    .await
    .unwrap();
    save_screenshot(name, element.screenshot().await.unwrap());
}

fn save_screenshot(name: &str, png: Vec<u8>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Signs in through the form: a page without a session sends to it, and back afterwards.
async fn sign_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/kb")).await.unwrap();
    wait_for(c, "//h1[normalize-space()='Sign in']").await;
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(ADMIN_EMAIL)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::XPath("//button[normalize-space()='Sign in']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "//h1[normalize-space()='Knowledge bases']").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_pick_watch_search_and_reauthorise_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let s = TestServer::start(
        Db::Sqlite,
        Options {
            onedrive: Some(OneDriveTest { with_secret: true }),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let control = s.drive();
    let drive = control.default_drive_id();
    control
        .put_file(
            &drive,
            "/Projects/Handbook/Onboarding.txt",
            format!("Welcome aboard. The {PHRASE} starts on Monday; bring boots.").into_bytes(),
        )
        .unwrap();
    for i in 0..15 {
        control
            .put_file(
                &drive,
                &format!("/Projects/Handbook/Chapter {i:02}.txt"),
                format!("Chapter {i} of the handbook, on policies and procedures.").into_bytes(),
            )
            .unwrap();
    }
    control
        .put_file(&drive, "/Private/Diary.txt", b"not picked".to_vec())
        .unwrap();
    control
        .put_file(
            &drive,
            "/Projects/Roadmap 2027.txt",
            b"Themes for next year.".to_vec(),
        )
        .unwrap();
    control
        .put_file(
            &drive,
            "/Projects/Archive/2025/Retrospective.txt",
            b"What went well.".to_vec(),
        )
        .unwrap();
    // Downloads are slow, so the progress bar can be seen moving.
    let slow = control.add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 1000 },
    ));

    let c = browser(&driver, false).await;
    let base = s.base.clone();

    sign_in(&c, &base).await;

    // Create a OneDrive knowledge base.
    c.find(Locator::LinkText("New knowledge base"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "//input[@id='name']")
        .await
        .send_keys("Team handbook")
        .await
        .unwrap();
    c.find(Locator::Id("description"))
        .await
        .unwrap()
        .send_keys("Policies and onboarding, from the team's OneDrive")
        .await
        .unwrap();
    c.find(Locator::XPath("//input[@name='type' and @value='onedrive']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::XPath("//button[normalize-space()='Create']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "//h1[normalize-space()='Team handbook']").await;
    let kb_url = c.current_url().await.unwrap().to_string();
    let kb_id = kb_url.rsplit('/').next().unwrap().to_owned();

    // Connect: the popup goes through the emulator's consent to kbsync's callback page, which
    // tells this page; this page then opens the picker.
    c.find(Locator::XPath(
        "//a[@data-connect and normalize-space()='Connect OneDrive / SharePoint']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(&c, "//h1[normalize-space()='Add folders and files']").await;

    // Pick: open my drive, then Projects, and tick Handbook.
    wait_for(
        &c,
        "(//ul[contains(@class,'picker-list')]/li/button[contains(@class,'open')])[1]",
    )
    .await
    .click()
    .await
    .unwrap();
    wait_for(
        &c,
        "//ul[contains(@class,'picker-list')]/li[.//span[@class='entry-name' and text()='Projects']]/button",
    )
    .await
    .click()
    .await
    .unwrap();
    wait_for(
        &c,
        "//ul[contains(@class,'picker-list')]/li[.//span[@class='entry-name' and text()='Handbook']]//input[@type='checkbox']",
    )
    .await
    .click()
    .await
    .unwrap();
    wait_for(
        &c,
        "//p[contains(@class,'picked-summary') and contains(., '1 selected: Handbook')]",
    )
    .await;
    wait_for(
        &c,
        "//nav[contains(@class,'picker-crumbs')]/button[normalize-space()='Projects']",
    )
    .await;
    screenshot(&c, "picker").await;
    c.find(Locator::XPath(
        "//button[normalize-space()='Add to knowledge base']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();

    // Watch: the bar moves while files download, then says "Completed".
    wait_for(
        &c,
        "//span[contains(@class,'progress-label') and starts-with(normalize-space(), 'Syncing ')]",
    )
    .await;
    wait_for(
        &c,
        "//span[contains(@class,'progress-file') and contains(., '.txt')]",
    )
    .await;
    screenshot(&c, "kb-sync").await;
    control.remove_fault(slow);
    wait_for(
        &c,
        "//span[contains(@class,'progress-label') and normalize-space()='Completed']",
    )
    .await;
    // The page reloads with the synced files.
    wait_for(&c, "//span[@class='file-name' and text()='Onboarding.txt']").await;
    assert!(
        c.find(Locator::XPath(
            "//span[@class='file-name' and text()='Diary.txt']"
        ))
        .await
        .is_err(),
        "a file outside the picked folder was synced"
    );

    // The list shows the knowledge base on auto-sync, next to others in other states.
    let token = s.admin_token().await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&token),
            serde_json::json!({"name": "Meeting notes", "description": "Uploaded by hand"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let notes = body["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .upload(Some(&token), &notes, "standup.txt", b"Monday standup".to_vec())
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let (status, _) = s
        .post(
            "/api/v1/knowledge",
            Some(&token),
            serde_json::json!({"name": "Sales decks", "description": "Not connected yet", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    c.goto(&format!("{base}/kb")).await.unwrap();
    wait_for(
        &c,
        &format!("//li[@data-kb='{kb_id}']//span[contains(@class,'badge') and starts-with(normalize-space(), 'Auto-sync on')]"),
    )
    .await;
    screenshot(&c, "kb-list").await;

    // Search finds a phrase of a synced document.
    c.goto(&format!("{base}/search")).await.unwrap();
    wait_for(&c, "//input[@id='q']")
        .await
        .send_keys(PHRASE)
        .await
        .unwrap();
    c.find(Locator::XPath(
        "//form[@role='search']//button[normalize-space()='Search']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        &c,
        &format!("//li[@class='hit' and .//*[text()='Onboarding.txt']]/p[@class='snippet' and contains(., '{PHRASE}')]"),
    )
    .await;
    screenshot(&c, "search").await;

    // A personal API key, made on its page and shown once, opens the API.
    c.goto(&format!("{base}/keys")).await.unwrap();
    wait_for(&c, "//input[@id='name']")
        .await
        .send_keys("Assistant")
        .await
        .unwrap();
    c.find(Locator::XPath("//button[normalize-space()='Create key']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let api_key = wait_for(&c, "//code[@data-testid='new-key']")
        .await
        .text()
        .await
        .unwrap();
    assert!(api_key.starts_with("kbs_"), "{api_key}");
    let (status, me) = s.get("/api/v1/me", Some(&api_key)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{me}");
    screenshot(&c, "api-keys").await;

    // The emulator revokes the refresh token; once the cached access token runs out, the next
    // sync must refresh, is refused, and the knowledge base needs its owner again.
    control.revoke_refresh_tokens(&control.default_user_id()).unwrap();
    s.clock.advance(chrono::Duration::hours(2));
    control.advance_clock(chrono::Duration::hours(2));
    c.goto(&kb_url).await.unwrap();
    wait_for(&c, "//button[normalize-space()='Sync now']")
        .await
        .click()
        .await
        .unwrap();
    let reauth_badge = format!(
        "//li[@data-kb='{kb_id}']//span[contains(@class,'badge') and normalize-space()='Re-authorisation required']"
    );
    reload_until(&c, &format!("{base}/kb"), &reauth_badge).await;

    // Reconnecting from the list clears it.
    c.find(Locator::XPath(&format!(
        "//li[@data-kb='{kb_id}']//a[@data-connect and normalize-space()='Reconnect']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        &c,
        &format!("//li[@data-kb='{kb_id}']//span[contains(@class,'badge') and starts-with(normalize-space(), 'Auto-sync on')]"),
    )
    .await;
    assert!(c.find(Locator::XPath(&reauth_badge)).await.is_err());

    c.close().await.unwrap();

    // On a phone, in dark mode, the knowledge base's page still reads well.
    let phone = browser(&driver, true).await;
    sign_in(&phone, &base).await;
    phone.goto(&kb_url).await.unwrap();
    wait_for(&phone, "//span[@class='file-name' and text()='Onboarding.txt']").await;
    screenshot(&phone, "kb-phone-dark").await;
    phone.close().await.unwrap();
    drop(driver);
    s.stop().await;
}

/// Google Drive in the browser: create a Google Drive knowledge base → connect in the popup
/// through the emulated Google consent → the picker's top level (My Drive, a shared drive,
/// "Shared with me", named as Drive users know them) → open My Drive, tick a folder → the sync
/// completes, the badge says so and the folder's document is listed → the access page says what
/// Google Drive sharing grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_drive_knowledge_base_connects_picks_and_syncs_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let s = TestServer::start(
        Db::Sqlite,
        Options {
            gdrive: Some(GDriveTest::default()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let drive = s.gdrive();
    let root = drive.root_id();
    let handbook = drive.create_folder(&root, "Handbook").unwrap();
    drive
        .create_file(
            &handbook,
            "Onboarding.txt",
            format!("Welcome aboard. The {PHRASE} starts on Monday."),
        )
        .unwrap();
    for i in 0..4 {
        drive
            .create_file(
                &handbook,
                &format!("Chapter {i}.txt"),
                format!("Chapter {i} of the handbook."),
            )
            .unwrap();
    }
    drive.create_file(&root, "Diary.txt", "not picked").unwrap();
    let me = drive.info().default_user.email;
    drive
        .create_shared_drive(
            "Engineering",
            vec![gdrive_emulator::Grant {
                grantee: gdrive_emulator::Grantee::User { email_address: me },
                role: "organizer".into(),
                allow_file_discovery: false,
            }],
        )
        .unwrap();

    let c = browser(&driver, false).await;
    let base = s.base.clone();
    sign_in(&c, &base).await;

    // The new knowledge base form offers Google Drive, from the registry.
    c.goto(&format!("{base}/kb/new")).await.unwrap();
    wait_for(&c, "//input[@id='name']")
        .await
        .send_keys("Drive handbook")
        .await
        .unwrap();
    wait_for(
        &c,
        "//label[contains(., 'Google Drive folders, kept in sync')]/input[@name='type' and @value='gdrive']",
    )
    .await
    .click()
    .await
    .unwrap();
    c.find(Locator::XPath("//button[normalize-space()='Create']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "//h1[normalize-space()='Drive handbook']").await;
    let kb_url = c.current_url().await.unwrap().to_string();

    // Connect in the popup; the page then opens the picker.
    c.find(Locator::XPath(
        "//a[@data-connect and normalize-space()='Connect Google Drive']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(&c, "//h1[normalize-space()='Add folders and files']").await;

    // The top level: My Drive and the shared drive as drives, "Shared with me" as a view.
    let row = |name: &str| {
        format!("//ul[contains(@class,'picker-list')]/li[.//span[@class='entry-name' and text()='{name}']]")
    };
    wait_for(
        &c,
        &format!(
            "{}//span[contains(@class,'kind-drive') and text()='drive']",
            row("Engineering")
        ),
    )
    .await;
    wait_for(
        &c,
        &format!(
            "{}//span[contains(@class,'kind-site') and text()='view']",
            row("Shared with me")
        ),
    )
    .await;
    wait_for(
        &c,
        "//nav[contains(@class,'picker-crumbs')]/button[normalize-space()='Google Drive']",
    )
    .await;
    wait_for(
        &c,
        &format!("{}/button[contains(@class,'open')]", row("My Drive")),
    )
    .await
    .click()
    .await
    .unwrap();
    wait_for(&c, &format!("{}//input[@type='checkbox']", row("Handbook")))
        .await
        .click()
        .await
        .unwrap();
    wait_for(
        &c,
        "//p[contains(@class,'picked-summary') and contains(., '1 selected: Handbook')]",
    )
    .await;
    c.find(Locator::XPath(
        "//button[normalize-space()='Add to knowledge base']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();

    // The run completes; the page shows the document and the badge says the base is synced.
    wait_for(&c, "//span[@class='file-name' and text()='Onboarding.txt']").await;
    reload_until(
        &c,
        &kb_url,
        "//span[@id='kb-badge' and (starts-with(normalize-space(), 'Auto-sync on') or normalize-space()='Completed')]",
    )
    .await;
    wait_for(&c, "//span[@class='file-name' and text()='Chapter 3.txt']").await;
    assert!(
        c.find(Locator::XPath(
            "//span[@class='file-name' and text()='Diary.txt']"
        ))
        .await
        .is_err(),
        "a file outside the picked folder was synced"
    );
    wait_for(
        &c,
        "//p[contains(@class,'muted') and starts-with(normalize-space(), 'Google Drive')]",
    )
    .await;

    // Drive sends no change notifications to kbsync: the page does not promise any.
    wait_for(
        &c,
        "//p[normalize-space()='Change notifications: Google Drive does not send kbsync any; changes are found by the scheduled runs.']",
    )
    .await;

    // The access page says what Google Drive sharing grants, in Drive's words.
    c.goto(&format!("{kb_url}/access")).await.unwrap();
    wait_for(
        &c,
        "//p[@id='source-sharing' and contains(., 'Google Drive sharing') and contains(., 'Google groups') and contains(., 'whole domain') and contains(., 'anyone who has the link')]",
    )
    .await;

    c.close().await.unwrap();
    drop(driver);
    s.stop().await;
}

/// The run history chart of a knowledge base and the admin page's activity chart, drawn by the
/// server, in light and in dark mode: each is an image with its numbers in a table under a
/// disclosure. Takes their screenshots for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_and_activity_charts_read_in_light_and_dark_mode() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let s = TestServer::start(
        Db::Sqlite,
        Options {
            onedrive: Some(OneDriveTest { with_secret: true }),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let token = s.admin_token().await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&token),
            serde_json::json!({"name": "Team handbook", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let kb = body["id"].as_str().unwrap().to_owned();
    crate::ui::record_runs(&s, &kb).await;
    let base = s.base.clone();
    for (dark, suffix) in [(false, ""), (true, "-dark")] {
        let c = browser_with(&driver, "1100,900", dark).await;
        sign_in(&c, &base).await;
        c.goto(&format!("{base}/kb/{kb}")).await.unwrap();
        wait_for(
            &c,
            "//figure[@id='run-chart']//*[local-name()='svg' and @role='img']",
        )
        .await;
        // The numbers are there for whoever cannot see the picture.
        wait_for(
            &c,
            "//figure[@id='run-chart']//details/summary[normalize-space()='The runs in numbers']",
        )
        .await;
        element_screenshot(&c, "figure#run-chart", &format!("kb-run-chart{suffix}")).await;
        c.goto(&format!("{base}/admin")).await.unwrap();
        wait_for(
            &c,
            "//figure[@id='activity-chart']//*[local-name()='svg' and @role='img']",
        )
        .await;
        element_screenshot(
            &c,
            "section[aria-labelledby='activity-h']",
            &format!("admin-activity-chart{suffix}"),
        )
        .await;
        c.close().await.unwrap();
    }
    drop(driver);
    s.stop().await;
}

/// "Sign in with Microsoft" on the sign-in page goes through the emulated Entra (consent is automatic
/// for its default user, Adele) and lands back on the page that asked for a session, signed in as her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_microsoft_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let s = TestServer::start(
        Db::Sqlite,
        Options {
            oidc: Some(crate::common::OidcTest::default()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let c = browser(&driver, false).await;
    c.goto(&format!("{}/search", s.base)).await.unwrap();
    wait_for(&c, "//h1[normalize-space()='Sign in']").await;
    screenshot(&c, "sign-in").await;
    wait_for(
        &c,
        "//a[@id='oidc-sign-in' and normalize-space()='Sign in with Microsoft']",
    )
    .await
    .click()
    .await
    .unwrap();
    wait_for(&c, "//h1[normalize-space()='Search']").await;
    wait_for(
        &c,
        "//*[contains(normalize-space(), 'adele.vance@contoso.onmicrosoft.com')]",
    )
    .await;
    // Signing out ends the kbsync session and offers Microsoft's own sign-out.
    c.find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "//a[normalize-space()='Also sign out of Microsoft']").await;
    c.close().await.unwrap();
    drop(driver);
    s.stop().await;
}
