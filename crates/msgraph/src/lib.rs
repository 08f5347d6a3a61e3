//! The OneDrive / SharePoint datasource: Microsoft Graph v1.0 drives, as
//! Microsoft documents them (and as they behave where the documentation is silent).
//!
//! [`OneDrive`] implements [`Datasource`]; it is stateless, and the sync engine owns cursors,
//! retries across runs and persistence. Within one call the Graph client retries on its own
//! (see [`client`]'s module documentation for the policy), and all requests of one tenant share
//! one throttle gate across calls and sync runs (see [`throttle`]).
//!
//! # Browse locations
//! | `BrowseLocation` | lists |
//! |---|---|
//! | `{ drive_id: None, .. }` | the user's drive, their other drives, items shared with them, and SharePoint sites |
//! | `{ drive_id: Some("site:{site id}"), .. }` | the site's document libraries (drives) |
//! | `{ drive_id: Some(d), item_id: None }` | the drive's root folder |
//! | `{ drive_id: Some(d), item_id: Some(i) }` | the folder's children |
//!
//! Every [`BrowseEntry`] carries the `drive_id` (and its `id` is the `item_id`) to open it with;
//! a site's `drive_id` is `site:{id}` and a drive's `id` and `drive_id` are both the drive id.
//!
//! # Delta
//! [`Datasource::changes`] returns one Graph delta page at a time, mapped but not merged. The
//! engine must follow [`NextPage::More`] to the end of the round before applying anything, and
//! must expect what Graph promises: items in any order (a child before its parent, possibly on a
//! later page), the same item more than once (the last occurrence wins), renamed or moved folders
//! reported alone (descendants' paths change implicitly; track items by id), tombstones without a
//! name on business drives, and the scope folder itself reported as [`ItemKind::Root`].
//!
//! Delta asks for `Prefer: hierarchicalsharing` (business drives): an item carrying the `shared`
//! facet is the root of a permission hierarchy (`ItemSharing::own`); the others have their
//! parent's permissions.
//!
//! # Groups
//! [`Datasource::group_members`] expands an Entra group (`Principal::Group`) through
//! `/groups/{id}/transitiveMembers`, which needs `GroupMember.Read.All` (admin consent). SharePoint
//! groups (`Principal::SiteGroup`) cannot be expanded through Graph v1.0.

pub mod client;
pub mod config;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub mod mapping;
pub mod model;
pub mod quickxorhash;
mod site_groups;
pub mod throttle;

use std::sync::Arc;

use async_trait::async_trait;
use kbsync_core::datasource::{
    BrowseEntry, BrowseLocation, ByteStream, ChangePage, Datasource, DatasourceError, DatasourceKind,
    GroupMember, ItemKind, NextPage, OAuthSpec, Principal, RemoteItem, RemotePermission, SourceRef,
    TokenSource, Watch, WatchRequest,
};
use kbsync_core::{Clock, OsRandom, Random, SystemClock};
use reqwest::header::LOCATION;
use serde::de::DeserializeOwned;
use tracing::{instrument, warn};
use url::Url;

pub use client::{Sleeper, TokioSleeper};
pub use config::{
    DEFAULT_AUTHORITY_URL, DEFAULT_GRAPH_URL, DEFAULT_SCOPES, GRAPH_RESOURCE, GraphConfig, microsoft_oauth,
};
pub use mapping::{QUICK_XOR_HASH, SITE_PREFIX};
pub use quickxorhash::QuickXorHash;

use client::{Auth, Call, GraphClient};
use kbsync_http::{Expected, verified_stream};
use model::{DriveItem, Page, Permission, Subscription};

/// Upper bound on pages followed in one listing, against a service that never stops paging.
const MAX_PAGES: usize = 100_000;

/// Sent with every delta request (learn.microsoft.com/graph/api/driveitem-delta, "Scanning
/// permissions hierarchies"). On business drives, `hierarchicalsharing` puts the `shared` facet
/// only on items whose permissions may differ from their parent's (the roots of permission
/// hierarchies, and items whose sharing changed), so the engine reads permissions only there;
/// `deltashowsharingchanges` annotates items whose sharing changed since the token
/// (`@microsoft.graph.sharedChanged`) and requires the two before it. Personal drives ignore them.
const DELTA_PREFER: &str =
    "deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges, hierarchicalsharing";

/// What reading a group's members needs (learn.microsoft.com/graph/api/group-list-transitivemembers).
const GROUP_MEMBERS_PERMISSION: &str = "GroupMember.Read.All";

/// The longest a driveItem subscription may live: 42,300 minutes (learn.microsoft.com/graph/api/resources/subscription,
/// "Subscription lifetime").
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 42_300;

/// The largest `$top` directory collections accept (learn.microsoft.com/graph/paging).
const MAX_DIRECTORY_PAGE: u32 = 999;

/// The OneDrive / SharePoint datasource.
pub struct OneDrive {
    client: GraphClient,
    oauth: OAuthSpec,
}

impl std::fmt::Debug for OneDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneDrive")
            .field("config", &self.client.config)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

impl OneDrive {
    /// `http` must not follow redirects and must not carry a default `Authorization` header:
    /// build it with [`GraphConfig::http_client`]. Jitter comes from the OS generator and
    /// "now" from the system clock unless replaced with [`OneDrive::with_random`] and
    /// [`OneDrive::with_clock`].
    pub fn new(
        config: GraphConfig,
        oauth: OAuthSpec,
        http: reqwest::Client,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        Self {
            client: GraphClient::new(http, config, sleeper, Arc::new(OsRandom), Arc::new(SystemClock)),
            oauth,
        }
    }

    /// The source of retry jitter.
    pub fn with_random(mut self, random: Arc<dyn Random>) -> Self {
        self.client.random = random;
        self
    }

    /// "Now", used for an HTTP-date `Retry-After` when the answer has no `Date` header.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client.clock = clock;
        self
    }

    pub fn config(&self) -> &GraphConfig {
        &self.client.config
    }

    /// Every item of a paged collection, following `@odata.nextLink` verbatim.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        tokens: &dyn TokenSource,
        first: Url,
    ) -> Result<Vec<T>, DatasourceError> {
        let mut out = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.client.get_json(tokens, &url).await?;
            out.extend(page.value);
            match page.next_link {
                Some(next) => url = self.client.service_link(&next)?,
                None => return Ok(out),
            }
        }
        Err(DatasourceError::Permanent(format!(
            "{} kept paging beyond {MAX_PAGES} pages",
            url.path()
        )))
    }

    /// Every user in Entra group `id`, nested groups resolved by the directory
    /// (`/groups/{id}/transitiveMembers` lists their users itself, so nested group objects are
    /// skipped), all pages, each user once.
    async fn entra_group_members(
        &self,
        tokens: &dyn TokenSource,
        id: &str,
    ) -> Result<Vec<GroupMember>, DatasourceError> {
        let mut url = self.client.url(&["groups", id, "transitiveMembers"])?;
        let top = self.client.config.page_size.clamp(1, MAX_DIRECTORY_PAGE);
        url.set_query(Some(&format!("$select=id,mail,userPrincipalName&$top={top}")));
        let objects: Vec<model::DirectoryObject> = match self.all_pages(tokens, url).await {
            Ok(objects) => objects,
            // The directory answers 403 Authorization_RequestDenied when the consent lacks the
            // permission; name it, so that an administrator knows what to grant.
            Err(DatasourceError::NotFound(why)) if errors::is_forbidden(&why) => {
                return Err(DatasourceError::NotFound(format!(
                    "the members of group {id} cannot be read: the connection lacks \
                     {GROUP_MEMBERS_PERMISSION} (which needs admin consent): {why}"
                )));
            }
            Err(DatasourceError::NotFound(why)) => {
                return Err(DatasourceError::NotFound(format!("group {id}: {why}")));
            }
            Err(e) => return Err(e),
        };
        let mut members: Vec<GroupMember> = Vec::new();
        for member in objects.iter().filter_map(mapping::group_member) {
            let known = members.iter().any(|m| m.id.is_some() && m.id == member.id);
            if !known {
                members.push(member);
            }
        }
        Ok(members)
    }

    fn with_top(&self, mut url: Url) -> Url {
        url.set_query(Some(&format!("$top={}", self.client.config.page_size.max(1))));
        url
    }

    /// Whether `item_id` is its drive's root (delta must then use the `root/delta` form).
    async fn is_drive_root(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<bool, DatasourceError> {
        if item_id == "root" {
            return Ok(true);
        }
        let mut url = self.client.url(&["drives", drive_id, "items", item_id])?;
        url.set_query(Some("$select=id,root"));
        let item: DriveItem = self.client.get_json(tokens, &url).await?;
        Ok(item.root.is_some())
    }

    async fn top_level(&self, tokens: &dyn TokenSource) -> Result<Vec<BrowseEntry>, DatasourceError> {
        let mut entries = Vec::new();
        let my_drive: Option<model::Drive> = optional(
            "the user's drive",
            self.client
                .get_json(tokens, &self.client.url(&["me", "drive"])?)
                .await,
        )?;
        let drives: Vec<model::Drive> = optional(
            "the user's drives",
            self.all_pages(tokens, self.client.url(&["me", "drives"])?).await,
        )?
        .unwrap_or_default();
        for d in my_drive.iter().chain(drives.iter()) {
            if !entries.iter().any(|e: &BrowseEntry| e.id == d.id) {
                entries.push(mapping::drive_entry(d));
            }
        }
        let shared: Vec<DriveItem> = optional(
            "items shared with the user",
            self.all_pages(tokens, self.client.url(&["me", "drive", "sharedWithMe"])?)
                .await,
        )?
        .unwrap_or_default();
        entries.extend(shared.iter().filter_map(|i| mapping::browse_entry(i, None)));
        let mut sites_url = self.client.url(&["sites"])?;
        sites_url.set_query(Some("search=*"));
        let sites: Vec<model::Site> =
            optional("SharePoint sites", self.all_pages(tokens, sites_url).await)?.unwrap_or_default();
        entries.extend(sites.iter().map(mapping::site_entry));
        mapping::sort_entries(&mut entries);
        if let Some(mine) = &my_drive
            && let Some(pos) = entries.iter().position(|e| e.id == mine.id)
        {
            let e = entries.remove(pos);
            entries.insert(0, e);
        }
        Ok(entries)
    }

    /// Follows `/content` to the bytes: Graph answers with a redirect to a pre-authenticated
    /// URL (or, from a server that serves content directly, with the content itself).
    async fn content_answer(
        &self,
        tokens: &dyn TokenSource,
        item: &RemoteItem,
    ) -> Result<Content, DatasourceError> {
        let content_url = self
            .client
            .url(&["drives", &item.drive_id, "items", &item.id, "content"])?;
        let head = self.client.get_head(Auth::Bearer(tokens), &content_url).await?;
        let answer = head.response;
        if !answer.status().is_redirection() {
            return Ok(Content::Ready(answer));
        }
        let location = answer
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| DatasourceError::Transient("the content redirect has no Location".into()))?;
        let target = content_url
            .join(location)
            .map_err(|e| DatasourceError::Transient(format!("the content redirect is not a URL: {e}")))?;
        if !matches!(target.scheme(), "https" | "http") {
            return Err(DatasourceError::Permanent(format!(
                "the content redirect uses the {} scheme",
                target.scheme()
            )));
        }
        drop(answer);
        // Pre-authenticated: the bearer token must not go to the download host.
        // The download host serves and throttles the same tenant: the same gate.
        match self.client.get_head(Auth::Anonymous(&head.gate), &target).await {
            Ok(r) => Ok(Content::Ready(r.response)),
            Err(DatasourceError::Unauthorized(why) | DatasourceError::NotFound(why)) => {
                Ok(Content::Refused(why))
            }
            Err(e) => Err(e),
        }
    }
}

/// Where following `/content` ended.
enum Content {
    /// The answer whose body is the file.
    Ready(reqwest::Response),
    /// The download host refused the pre-authenticated URL (401/403/404): it expired or was
    /// revoked, which says nothing about the user's own credentials.
    Refused(String),
}

/// Treats `NotFound`/`Permanent` from an optional part of a listing as "nothing there" (logged),
/// so that, say, a tenant without SharePoint search still shows the user's drives.
fn optional<T>(what: &str, r: Result<T, DatasourceError>) -> Result<Option<T>, DatasourceError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ (DatasourceError::NotFound(_) | DatasourceError::Permanent(_))) => {
            warn!(error = %e, "browse: leaving out {what}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Datasource for OneDrive {
    fn kind(&self) -> DatasourceKind {
        DatasourceKind::OneDrive
    }

    fn oauth(&self) -> &OAuthSpec {
        &self.oauth
    }

    #[instrument(skip_all, fields(drive.id = ?at.drive_id, item.id = ?at.item_id))]
    async fn browse(
        &self,
        tokens: &dyn TokenSource,
        at: &BrowseLocation,
    ) -> Result<Vec<BrowseEntry>, DatasourceError> {
        let Some(drive_id) = at.drive_id.as_deref() else {
            return self.top_level(tokens).await;
        };
        if let Some(site_id) = drive_id.strip_prefix(SITE_PREFIX) {
            let drives: Vec<model::Drive> = self
                .all_pages(tokens, self.client.url(&["sites", site_id, "drives"])?)
                .await?;
            let mut entries: Vec<BrowseEntry> = drives.iter().map(mapping::drive_entry).collect();
            mapping::sort_entries(&mut entries);
            return Ok(entries);
        }
        let url = match at.item_id.as_deref() {
            None => self.client.url(&["drives", drive_id, "root", "children"])?,
            Some(item_id) => self
                .client
                .url(&["drives", drive_id, "items", item_id, "children"])?,
        };
        let children: Vec<DriveItem> = self.all_pages(tokens, self.with_top(url)).await?;
        let mut entries: Vec<BrowseEntry> = children
            .iter()
            .filter_map(|c| mapping::browse_entry(c, Some(drive_id)))
            .collect();
        mapping::sort_entries(&mut entries);
        Ok(entries)
    }

    #[instrument(skip_all, fields(drive.id = %source.drive_id, item.id = %source.item_id, first = cursor.is_none()))]
    async fn changes(
        &self,
        tokens: &dyn TokenSource,
        source: &SourceRef,
        cursor: Option<&str>,
    ) -> Result<ChangePage, DatasourceError> {
        let url = match cursor {
            // nextLink / deltaLink / a 410's Location: opaque, followed verbatim.
            Some(link) => self.client.service_link(link)?,
            None => {
                let url = if self
                    .is_drive_root(tokens, &source.drive_id, &source.item_id)
                    .await?
                {
                    self.client.url(&["drives", &source.drive_id, "root", "delta"])?
                } else {
                    self.client
                        .url(&["drives", &source.drive_id, "items", &source.item_id, "delta"])?
                };
                // No $select: a $select without `deleted` drops the tombstone facet.
                self.with_top(url)
            }
        };
        let page: Page<DriveItem> = self
            .client
            .get_json_preferring(tokens, &url, Some(DELTA_PREFER))
            .await?;
        let items = page
            .value
            .iter()
            .map(|i| mapping::remote_item(i, &source.drive_id, Some(&source.item_id)))
            .collect();
        let next = match (page.next_link, page.delta_link) {
            (Some(next), _) => NextPage::More(next),
            (None, Some(delta)) => NextPage::Done(delta),
            (None, None) => {
                return Err(DatasourceError::Permanent(
                    "a delta page had neither @odata.nextLink nor @odata.deltaLink".into(),
                ));
            }
        };
        Ok(ChangePage { items, next })
    }

    #[instrument(skip_all, fields(drive.id = %drive_id, item.id = %item_id))]
    async fn item(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<RemoteItem, DatasourceError> {
        // `root` names a drive's root folder; Graph addresses it as `/drives/{id}/root`.
        let url = if item_id == "root" {
            self.client.url(&["drives", drive_id, "root"])?
        } else {
            self.client.url(&["drives", drive_id, "items", item_id])?
        };
        let item: DriveItem = self.client.get_json(tokens, &url).await?;
        Ok(mapping::remote_item(&item, drive_id, None))
    }

    #[instrument(skip_all, fields(drive.id = %item.drive_id, item.id = %item.id))]
    async fn download(
        &self,
        tokens: &dyn TokenSource,
        item: &RemoteItem,
    ) -> Result<ByteStream, DatasourceError> {
        if item.kind != ItemKind::File || item.deleted {
            return Err(DatasourceError::Permanent(format!(
                "item {} is not a file that can be downloaded",
                item.id
            )));
        }
        // Checked only when the item has a quickXorHash: a missing hash is not a mismatch, Graph
        // fills hashes in lazily.
        let hash = item
            .hash
            .as_ref()
            .filter(|h| h.algorithm == QUICK_XOR_HASH)
            .map(|h| h.value.clone());
        let expected = Expected {
            size: hash.as_ref().and(item.size).and_then(|s| u64::try_from(s).ok()),
            hash,
        };
        let idle = self.client.config.download_idle_timeout;
        let response = match self.content_answer(tokens, item).await? {
            Content::Ready(r) => r,
            Content::Refused(why) => {
                warn!(reason = %why, "the download URL was refused; fetching a fresh one");
                match self.content_answer(tokens, item).await? {
                    Content::Ready(r) => r,
                    Content::Refused(why) => {
                        return Err(DatasourceError::Transient(format!(
                            "the download URL was refused twice: {why}"
                        )));
                    }
                }
            }
        };
        Ok(verified_stream(response, QuickXorHash::new(), expected, idle))
    }

    #[instrument(skip_all, fields(drive.id = %drive_id, item.id = %item_id))]
    async fn permissions(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<Vec<RemotePermission>, DatasourceError> {
        let url = self
            .client
            .url(&["drives", drive_id, "items", item_id, "permissions"])?;
        let permissions: Vec<Permission> = self.all_pages(tokens, url).await?;
        Ok(permissions
            .iter()
            .map(|p| mapping::remote_permission(p, drive_id))
            .collect())
    }

    #[instrument(skip_all)]
    async fn group_members(
        &self,
        tokens: &dyn TokenSource,
        group: &Principal,
    ) -> Result<Vec<GroupMember>, DatasourceError> {
        match group {
            Principal::Group { id: Some(id), .. } => self.entra_group_members(tokens, id).await,
            Principal::Group { id: None, .. } => Err(DatasourceError::NotFound(
                "a directory group without an id cannot be looked up".into(),
            )),
            // SharePoint site groups: SharePoint REST (see `site_groups`).
            Principal::SiteGroup { site, id, .. } => self.site_group_members(tokens, site, id).await,
            Principal::User { .. } | Principal::Link { .. } => {
                Err(DatasourceError::Permanent(format!("{group:?} is not a group")))
            }
        }
    }

    fn watch_lifetime(&self) -> Option<chrono::Duration> {
        Some(chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES))
    }

    /// `POST /subscriptions` on the drive's root (`changeType: updated`, the only one drives
    /// support). Graph validates `notificationUrl` (and `lifecycleNotificationUrl`) with a
    /// handshake before it answers 201. Like every request, a 5xx is retried; should the first
    /// attempt have created a subscription after all, that one is never renewed and ends at its
    /// expiry, and its notifications name a subscription kbsync does not know (ignored).
    #[instrument(skip_all)]
    async fn watch(
        &self,
        tokens: &dyn TokenSource,
        request: &WatchRequest,
    ) -> Result<Watch, DatasourceError> {
        let mut body = serde_json::json!({
            "changeType": "updated",
            "notificationUrl": request.notification_url,
            "resource": format!("/drives/{}/root", request.drive_id),
            "expirationDateTime": graph_time(request.expires_at),
            "clientState": request.client_state,
        });
        if let Some(lifecycle) = &request.lifecycle_url {
            body["lifecycleNotificationUrl"] = serde_json::Value::String(lifecycle.clone());
        }
        let url = self.client.url(&["subscriptions"])?;
        let call = Call {
            method: &reqwest::Method::POST,
            body: Some(&body),
            prefer: None,
        };
        let created: Subscription = self.client.send_json(tokens, &url, call).await?;
        Ok(created.into_watch())
    }

    /// `PATCH /subscriptions/{id}` with the new expiry.
    #[instrument(skip_all)]
    async fn renew_watch(
        &self,
        tokens: &dyn TokenSource,
        watch_id: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Watch, DatasourceError> {
        let body = serde_json::json!({ "expirationDateTime": graph_time(expires_at) });
        let url = self.client.url(&["subscriptions", watch_id])?;
        let call = Call {
            method: &reqwest::Method::PATCH,
            body: Some(&body),
            prefer: None,
        };
        let renewed: Subscription = self.client.send_json(tokens, &url, call).await?;
        Ok(renewed.into_watch())
    }

    /// `DELETE /subscriptions/{id}` (204).
    #[instrument(skip_all)]
    async fn unwatch(&self, tokens: &dyn TokenSource, watch_id: &str) -> Result<(), DatasourceError> {
        let url = self.client.url(&["subscriptions", watch_id])?;
        let call = Call {
            method: &reqwest::Method::DELETE,
            body: None,
            prefer: None,
        };
        self.client.send(tokens, &url, call).await?;
        Ok(())
    }
}

/// A time as Graph reads it: UTC with `Z`, to the millisecond.
fn graph_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
