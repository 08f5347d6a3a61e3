//! The pages' templates and the plain values they show. Templates live in `templates/`, are
//! compiled into the binary and escape every value (HTML auto-escaping is on for `.html`).

use askama::Template;

/// What every page's frame shows: who is signed in, and the token its forms carry.
pub struct Chrome {
    pub email: Option<String>,
    pub is_admin: bool,
    pub csrf: String,
    /// The navigation entry to highlight: `kb`, `search`, `keys`, `account`, `admin` or empty.
    pub section: &'static str,
}

impl Chrome {
    pub fn anonymous() -> Self {
        Self {
            email: None,
            is_admin: false,
            csrf: String::new(),
            section: "",
        }
    }

    pub fn of(session: &super::Session, section: &'static str) -> Self {
        Self {
            email: Some(session.user.email.clone()),
            is_admin: session.user.is_admin(),
            csrf: session.csrf.clone(),
            section,
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub login_csrf: String,
    pub next: String,
    pub email: String,
    pub error: Option<String>,
    /// Whether the email and password form is shown.
    pub password_login: bool,
    /// The OpenID provider's name ("Microsoft") when one is configured: its button is shown.
    pub provider: Option<String>,
    /// The link to `/auth/oidc/login` with `next`.
    pub provider_login_url: String,
    /// Just signed out: say so, and offer the provider's own sign-out when it has one.
    pub signed_out: bool,
    pub provider_sign_out_url: Option<String>,
}

/// A row of the knowledge base list.
pub struct KbRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub badge_text: String,
    pub badge_tone: &'static str,
    /// The connect button the row shows to a manager: "Reconnect" when the connection needs
    /// renewing, "Connect" when a datasource knowledge base has none yet.
    pub connect: Option<&'static str>,
    /// Where the page goes once connected: the picker for a first connection.
    pub after_connect: String,
}

#[derive(Template)]
#[template(path = "kb_list.html")]
pub struct KbListPage {
    pub chrome: Chrome,
    pub rows: Vec<KbRow>,
    pub total: u64,
    pub prev_offset: Option<u64>,
    pub next_offset: Option<u64>,
}

/// A datasource offered when a knowledge base is created.
pub struct DatasourceChoice {
    /// The knowledge-base type the form posts.
    pub name: &'static str,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "kb_new.html")]
pub struct KbNewPage {
    pub chrome: Chrome,
    /// The datasources a knowledge base may be created for: configured on this server.
    pub datasources: Vec<DatasourceChoice>,
    /// The registry's datasources this server has no credentials for.
    pub unconfigured: Vec<&'static str>,
    pub name: String,
    pub description: String,
    pub error: Option<String>,
}

pub struct FileRow {
    pub name: String,
    pub path: String,
    pub size: String,
    pub status: String,
    pub tone: &'static str,
    pub error: Option<String>,
}

pub struct SourceRow {
    pub id: String,
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    pub synced: bool,
}

pub struct FailureRow {
    pub name: String,
    pub reason: String,
}

pub struct RunRow {
    pub started: String,
    pub trigger: String,
    pub status: String,
    pub tone: &'static str,
    pub duration: String,
    pub counts: String,
    /// Where the run's time went (empty when it was not measured).
    pub phases: String,
    pub failures: Vec<FailureRow>,
}

#[derive(Template)]
#[template(path = "kb.html")]
pub struct KbPage {
    pub chrome: Chrome,
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub is_remote: bool,
    pub can_write: bool,
    pub can_manage: bool,
    pub badge_text: String,
    pub badge_tone: &'static str,
    pub running: bool,
    pub status: String,
    pub progress_current: u64,
    pub progress_total: u64,
    pub progress_label: String,
    pub progress_file: String,
    pub last_error: Option<String>,
    pub last_sync: String,
    pub next_sync: String,
    pub connected: bool,
    pub needs_reauth: bool,
    pub sources: Vec<SourceRow>,
    pub files: Vec<FileRow>,
    pub files_total: u64,
    pub prev_offset: Option<u64>,
    pub next_offset: Option<u64>,
    pub runs: Vec<RunRow>,
    /// The run history chart with its numbers (escaped HTML, inserted as is).
    pub run_chart: String,
    /// Whether this server can publish into Open WebUI (it is configured).
    pub openwebui_available: bool,
    /// The knowledge base's publication into Open WebUI, when it is on.
    pub publication: Option<PublicationPanel>,
    /// Change notifications: `None` when this server has them off (polling only); otherwise one
    /// line per drive the knowledge base syncs that has a subscription.
    pub notifications: Option<Vec<LabelRow>>,
    /// Whether the knowledge base's datasource can notify kbsync of changes at all (the registry's
    /// webhook); when it cannot, only the scheduled runs find them, whatever this server's setting.
    pub source_notifies: bool,
}

/// A knowledge base's publication into Open WebUI, as its page shows it.
pub struct PublicationPanel {
    pub status: String,
    pub tone: &'static str,
    /// Whether the header shows the "Published to Open WebUI" badge (the last publish went through).
    pub published: bool,
    pub url: Option<String>,
    pub last_published: String,
    pub progress: String,
    pub counts: String,
    pub error: Option<String>,
    pub failures: Vec<FailureRow>,
    pub left_out: Vec<FailureRow>,
    pub history: Vec<RunRow>,
}

#[derive(Template)]
#[template(path = "picker.html")]
pub struct PickerPage {
    pub chrome: Chrome,
    pub id: String,
    pub name: String,
    /// The knowledge base's datasource: its API name and the picker's top level.
    pub datasource: &'static str,
    pub picker_root: &'static str,
    /// What the picker calls each kind of row (JSON: `{"drive": …, "site": …, …}`).
    pub entry_labels: String,
}

pub struct HitRow {
    pub name: String,
    pub kb_id: String,
    pub kb_name: String,
    /// The snippet in pieces, each with whether it is a word of the query (shown marked).
    pub snippet: Vec<(String, bool)>,
    pub web_url: Option<String>,
}

pub struct KbChoice {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    pub chrome: Chrome,
    pub q: String,
    pub kbs: Vec<KbChoice>,
    pub searched: bool,
    pub hits: Vec<HitRow>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "access.html")]
pub struct AccessPage {
    pub chrome: Chrome,
    pub id: String,
    pub name: String,
    pub owner: String,
    /// What the source's sharing lets people read, for a knowledge base synced from one.
    pub sharing: Option<&'static str>,
    pub read: String,
    pub write: String,
    pub error: Option<String>,
    pub saved: bool,
}

pub struct SettingRow {
    pub name: &'static str,
    pub value: String,
}

/// A row whose label is made at run time (a drive's change notifications).
pub struct LabelRow {
    pub label: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub chrome: Chrome,
    pub settings: Vec<SettingRow>,
    pub datasources: Vec<SettingRow>,
    pub scheduler: Vec<SettingRow>,
    /// Change notifications: whether they are on, then one row per drive subscription.
    pub notifications: Vec<LabelRow>,
    /// The last day's sync activity chart with its numbers (escaped HTML, inserted as is).
    pub activity_chart: String,
}

/// A key just made, shown once.
pub struct NewKeyView {
    pub name: String,
    pub secret: String,
    /// The service account it acts as (service keys only).
    pub account_email: String,
}

/// A row of a key list (never the key itself).
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scope: &'static str,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    /// The account it acts as (the admin's list).
    pub owner: String,
    pub service: bool,
    /// The key may name the user a tool server request is for (Open WebUI's forwarded email).
    pub asserts_users: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub chrome: Chrome,
    pub keys: Vec<KeyRow>,
    pub created: Option<NewKeyView>,
    pub revoked: bool,
    pub error: Option<String>,
    pub name: String,
    pub scope: String,
    pub expires_on: String,
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
pub struct AdminKeysPage {
    pub chrome: Chrome,
    pub keys: Vec<KeyRow>,
    pub created: Option<NewKeyView>,
    pub revoked: bool,
    pub error: Option<String>,
    pub name: String,
    pub scope: String,
    pub expires_on: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub chrome: Chrome,
    pub email: String,
    pub display_name: Option<String>,
    pub role: &'static str,
    pub has_password: bool,
    pub min_chars: usize,
    pub changed: bool,
    pub error: Option<String>,
}

/// A row of the admin's user list.
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub signs_in_with: &'static str,
    pub created: String,
    pub is_admin: bool,
    pub is_service: bool,
    pub is_self: bool,
    pub disabled: bool,
}

/// An account knowledge bases may be handed to.
pub struct HeirChoice {
    pub id: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
pub struct AdminUsersPage {
    pub chrome: Chrome,
    pub users: Vec<UserRow>,
    pub heirs: Vec<HeirChoice>,
    pub done: Option<&'static str>,
    pub min_chars: usize,
    pub total: u64,
    pub prev_offset: Option<u64>,
    pub next_offset: Option<u64>,
}

/// Splits a snippet into pieces, marking the words that the query contains (case-insensitive).
/// Only splits; every piece is still escaped by the template.
pub fn highlight(snippet: &str, query: &str) -> Vec<(String, bool)> {
    let terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut push = |text: &str, marked: bool| match pieces.last_mut() {
        Some((last, m)) if *m == marked => last.push_str(text),
        _ => pieces.push((text.to_owned(), marked)),
    };
    let mut word_start: Option<usize> = None;
    let mut plain_start = 0;
    for (i, c) in snippet
        .char_indices()
        .chain(std::iter::once((snippet.len(), ' ')))
    {
        match (c.is_alphanumeric(), word_start) {
            (true, None) => word_start = Some(i),
            (false, Some(start)) => {
                let word = &snippet[start..i];
                if terms.iter().any(|t| *t == word.to_lowercase()) {
                    push(&snippet[plain_start..start], false);
                    push(word, true);
                    plain_start = i;
                }
                word_start = None;
            }
            _ => {}
        }
    }
    push(&snippet[plain_start..], false);
    pieces.retain(|(text, _)| !text.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlight_marks_query_words_only_and_keeps_all_text() {
        let pieces = highlight("The Zebra <b>migration</b>, zebras.", "zebra migration");
        assert_eq!(
            pieces,
            vec![
                ("The ".to_owned(), false),
                ("Zebra".to_owned(), true),
                (" <b>".to_owned(), false),
                ("migration".to_owned(), true),
                ("</b>, zebras.".to_owned(), false),
            ]
        );
        assert_eq!(highlight("no match", "x"), vec![("no match".to_owned(), false)]);
    }
}
