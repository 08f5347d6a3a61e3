/// A documented configuration file with every setting at its default.
pub const EXAMPLE: &str = r#"# kbsync configuration. Every key is optional; the KBSYNC_<KEY> environment variable
# (upper-cased) overrides it, and --data-dir / --bind override those.

# Where the SQLite database, stored files and the generated secret key live.
data_dir = "./data"

# The address the HTTP server listens on.
bind = "127.0.0.1:8080"

# The database. Default: a SQLite file in data_dir. postgres://user@host/db selects PostgreSQL,
# which lets several kbsync instances share the work.
# database_url = "postgres://kbsync@127.0.0.1:5432/kbsync"

# Encrypts stored refresh tokens. Prefer the KBSYNC_SECRET_KEY environment variable; when neither
# is set, a key is generated once and kept in data_dir/secret_key (mode 0600).
# secret_key = "at least 16 characters"

# The address users reach kbsync at (used for OAuth redirects). Default: http://<bind>.
public_url = "http://127.0.0.1:8080"

# The first admin, created at start-up when the database has no user yet.
# admin_email = "admin@example.com"
# admin_password = "change me please"

# The largest file an upload may carry, in MiB.
max_upload_mb = 100

# Chunking of extracted text for search, in characters.
chunk_size = 1000
chunk_overlap = 100

# How many files are extracted at once (default: the number of CPU cores), and for how long
# one file may take before it is marked failed.
# ingest_concurrency = 2
ingest_timeout_secs = 60

# Where document parsers run: "process" (worker processes that are killed at the time limit and
# may use at most extract_memory_mb MiB of address space each; a crash there fails only that
# file) or "thread" (the server's own threads; a parser that loops or aborts hurts the server).
extract_isolation = "process"
extract_memory_mb = 1024

# How many API and web UI reads (GET, HEAD) are handled at once; more wait their turn. Keep it
# below the database pool (SQLite 8, PostgreSQL 10 connections) so that a crowd of clients never
# takes every connection from the sync runs. Writes, health checks and metrics never wait.
api_concurrency = 4

# Log lines as "text" or "json". The level comes from RUST_LOG (default: info).
log_format = "text"

# Sync: minutes between scheduled runs of each knowledge base, files fetched at once per run, the
# most files one knowledge base may hold (a run finding more stops with file_limit_exceeded), and
# the largest file synced, in MiB (larger ones are skipped).
sync_interval_minutes = 60
sync_concurrency = 8
max_files_per_kb = 10000
max_file_size_mb = 100

# Whether an organisation-wide or anonymous sharing link lets every kbsync user read the documents
# it opens. Off: only the people and groups the drive names read them.
sync_link_grants = false

# Minutes a knowledge base may go without reading every permission of its sources again. Between
# those reads a run reads only the items the drive reports with a sharing change (business drives)
# and new roots of permission hierarchies, so a run that finds nothing changed costs no request.
sharing_refresh_minutes = 360

# Minutes the members of a group (Entra group, SharePoint site group) are used before they are
# read again from the source. A group a document names for the first time is expanded at once.
group_refresh_minutes = 60

# Whether this instance runs the scheduler; turn it off on instances that should only serve.
scheduler = true
# Seconds between the scheduler's looks for due knowledge bases.
scheduler_tick_secs = 5
# Seconds a running sync's lease lasts without renewal (renewed every second): after a crash, the
# knowledge base is taken over by another instance, or this one after a restart, once it expires.
sync_lease_secs = 120
# Hours a knowledge base may need re-authorization (its owner must sign in again) before the read
# access that sync gave from its folders' sharing is withdrawn; manual grants stay.
reauth_grace_hours = 72

# Sign-in limits. Failed sign-ins to one account are slowed down (five free, then a delay that
# doubles); besides, one client address (the TCP peer: behind a reverse proxy, the proxy; IPv6 per
# /64) may fail this many times per window of this many minutes before it is refused (429) until the
# window ends. A failed sign-in counts against its account for login_failure_retention_hours.
login_address_max_failures = 50
login_address_window_minutes = 15
login_failure_retention_hours = 24

# Housekeeping, every housekeeping_minutes (at start-up first): deletes expired sessions, forgotten
# login failures, and finished sync run records older than run_retention_days, but always keeps each
# knowledge base's run_keep_latest most recent runs. Safe to run on every instance. It also removes
# the stored files no document references any more, blob_grace_minutes after the last document let go
# of them (docs/storage.md).
housekeeping_minutes = 60
run_retention_days = 90
run_keep_latest = 20
blob_grace_minutes = 60

# Change notifications: kbsync subscribes to the changes of every drive it syncs a folder of, and a
# change is searchable seconds later instead of at the next scheduled run (which still happens, as
# the safety net). The source must reach <public_url>/api/v1/webhooks/... over the internet, so
# "auto" turns them on only when public_url is https; "on" turns them on whatever the scheme
# (trusted networks, tests); "off" turns them off.
webhooks = "auto"
# Hours before its expiry a subscription is renewed (OneDrive's live at most 705 hours).
webhook_renew_before_hours = 48
# Milliseconds a notified knowledge base waits for more notifications before it runs (a save that
# fires several notifications makes one run).
webhook_debounce_ms = 2000
# Seconds between two looks at the subscriptions (creation, renewal, removal).
webhook_tick_secs = 60

# While rotating KBSYNC_SECRET_KEY: the previous key, so rows it encrypted stay readable.
# secret_key_previous = "the old key"

# Whether people may sign in with an email and password. Turning it off needs an OpenID provider
# ([oidc] below); accounts then come from the provider.
password_login = true

# OneDrive / SharePoint (Microsoft Graph). Without client_id the datasource is off. The client
# secret is never read from this file: set KBSYNC_ONEDRIVE_CLIENT_SECRET or client_secret_file.
# The app registration's redirect URI is <public_url>/api/v1/datasources/onedrive/auth/callback.
[onedrive]
# client_id = "00000000-0000-0000-0000-000000000000"
# client_secret_file = "/run/secrets/onedrive_client_secret"
tenant_id = "common"
authority_url = "https://login.microsoftonline.com"
# authorize_url and token_url default to <authority_url>/<tenant_id>/oauth2/v2.0/{authorize,token};
# set them to use any standards-compliant authorization server.
graph_url = "https://graph.microsoft.com/v1.0"
# GroupMember.Read.All (group members, for per-document access) needs an administrator's consent.
scopes = "https://graph.microsoft.com/Files.Read.All https://graph.microsoft.com/Sites.Read.All https://graph.microsoft.com/GroupMember.Read.All offline_access"
# App-only access: administrators may connect a knowledge base as the organisation's application
# (client credentials), which reads the SharePoint sites and libraries an administrator consented it
# to (application permissions such as Sites.Read.All) without any user's sign-in. Needs tenant_id set
# to the organisation's tenant (not "common") and, preferably, a certificate registered for the app:
# SharePoint REST (site group members) accepts app-only tokens only when they were obtained with a
# certificate. Without client_cert_file/client_key_file the client secret is used.
app_only = false
# client_cert_file = "/run/secrets/onedrive_app_cert.pem"
# client_key_file = "/run/secrets/onedrive_app_key.pem"

# Google Drive (Drive API v3). Without client_id the datasource is off. The client secret is never
# read from this file: set KBSYNC_GDRIVE_CLIENT_SECRET or client_secret_file. The OAuth client is a
# "Web application" client of a Google Cloud project with the Google Drive API enabled (scope
# https://www.googleapis.com/auth/drive.readonly); its authorized redirect URI is
# <public_url>/api/v1/datasources/gdrive/auth/callback. The README's "Google Drive" says how.
[gdrive]
# client_id = "000000000000-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com"
# client_secret_file = "/run/secrets/gdrive_client_secret"
authorize_url = "https://accounts.google.com/o/oauth2/v2/auth"
token_url = "https://oauth2.googleapis.com/token"
api_url = "https://www.googleapis.com/drive/v3"

# Sign-in with an OpenID provider (Entra ID or any other). Without issuer it is off. The client
# secret is never read from this file: set KBSYNC_OIDC_CLIENT_SECRET or client_secret_file. Register
# the redirect URI <public_url>/auth/oidc/callback with the provider. For Entra ID use the tenant's
# id in the issuer (single tenant: only that tenant's people sign in, and their user principal name
# counts as their email when the token has no email claim).
[oidc]
# issuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
# client_id = "00000000-0000-0000-0000-000000000000"
# client_secret_file = "/run/secrets/oidc_client_secret"
scopes = "openid email profile"
# Only these email domains may sign in (comma-separated); empty allows every domain.
allowed_domains = ""
# People whose ID token lists one of these group ids are admins, the others users, decided at each
# sign-in (needs the provider to send a groups claim; in Entra, the app registration's group claims).
admin_groups = ""
# What the sign-in button says after "Sign in with"; by default "Microsoft" for Entra, otherwise
# the issuer's host.
# display_name = "Contoso"

# Publishing knowledge bases into Open WebUI (each knowledge base's manager turns it on). Without
# url it is off. The API key (an Open WebUI admin's, Settings > Account > API keys) is never read
# from this file: set KBSYNC_OPENWEBUI_API_KEY or api_key_file.
[openwebui]
# url = "http://openwebui:8080"
# api_key_file = "/run/secrets/openwebui_api_key"
# Where people open Open WebUI, for links; url when not set.
# public_url = "https://chat.example.com"
# Files uploaded at once during a publish.
upload_concurrency = 4
# How long Open WebUI may take to process one uploaded file.
processing_timeout_secs = 600
"#;
