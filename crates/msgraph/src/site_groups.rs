//! The members of a SharePoint site group (Owners, Members, Visitors, …).
//!
//! Graph v1.0 has no site-group membership API; SharePoint REST does:
//! `GET {siteUrl}/_api/web/sitegroups/GetById({id})/users`. So:
//! 1. the site's URL comes from the drive whose permissions named the group
//!    (`GET /drives/{id}?$select=sharePointIds` → `sharePointIds.siteUrl`);
//! 2. SharePoint wants a token whose audience is its origin: the token source's
//!    [`TokenSource::access_token_for`] gives one (`{origin}/.default`). An app-only connection must have been
//!    made with a certificate: SharePoint refuses app-only tokens obtained with a client secret
//!    ("Unsupported app only token.");
//! 3. users (`PrincipalType` 1) are members by their mail and sign-in name; Entra groups in the site group
//!    (`PrincipalType` 4 with a group claim as login name: `c:0t.c|tenant|<id>` for security groups,
//!    `c:0o.c|federateddirectoryclaimprovider|<id>` for Microsoft 365 groups) are expanded as
//!    [`Principal::Group`]s. Other claims (everyone, everyone except external users, a Microsoft 365 group's
//!    owners `…|<id>_o`) cannot be expanded into users and are left out (logged): a document is then shown to
//!    fewer people, never to more.

use std::collections::HashSet;

use kbsync_core::datasource::{
    AccessToken, Datasource, DatasourceError, GroupMember, Principal, TokenSource,
};
use tracing::{instrument, warn};
use url::Url;

use crate::OneDrive;
use crate::model::{DriveSharePointIds, SharePointPage, SharePointPrincipal};

/// SharePoint's `PrincipalType` of a user.
const USER: i64 = 1;
/// SharePoint's `PrincipalType` of a security group (Entra groups, and claims such as "everyone").
const SECURITY_GROUP: i64 = 4;
/// Upper bound on pages followed in one listing.
const MAX_PAGES: usize = 1_000;

/// A token source that answers for one other resource of the same service (a SharePoint origin), so that the
/// Graph client's retries, throttling and one refresh on 401 apply to SharePoint REST too.
struct ResourceTokens<'a> {
    inner: &'a dyn TokenSource,
    resource: &'a str,
}

#[async_trait::async_trait]
impl TokenSource for ResourceTokens<'_> {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        self.inner.access_token_for(self.resource).await
    }

    async fn refresh(&self, _rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        self.inner.access_token_for(self.resource).await
    }
}

/// The Entra group id in a site-group member's login name, when it names one.
pub(crate) fn entra_group_of(login_name: &str) -> Option<&str> {
    let id = login_name
        .strip_prefix("c:0t.c|tenant|")
        .or_else(|| login_name.strip_prefix("c:0o.c|federateddirectoryclaimprovider|"))?;
    let guid_like = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    guid_like.then_some(id)
}

/// The origin (scheme, host, port) of a site URL: the SharePoint resource its tokens are for.
fn origin_of(site_url: &Url) -> String {
    site_url.origin().ascii_serialization()
}

impl OneDrive {
    /// Every user of site group `group_id` of the site that holds drive `drive_id`.
    #[instrument(skip_all, fields(drive.id = %drive_id, site_group.id = %group_id))]
    pub(crate) async fn site_group_members(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        group_id: &str,
    ) -> Result<Vec<GroupMember>, DatasourceError> {
        if group_id.is_empty() || !group_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(DatasourceError::Permanent(format!(
                "{group_id:?} is not a SharePoint site group id"
            )));
        }
        let mut url = self.client.url(&["drives", drive_id])?;
        url.set_query(Some("$select=id,sharePointIds"));
        let drive: DriveSharePointIds = self.client.get_json(tokens, &url).await?;
        let site_url = drive.sharepoint_ids.and_then(|ids| ids.site_url).ok_or_else(|| {
            DatasourceError::NotFound(format!(
                "drive {drive_id} belongs to no SharePoint site, so it has no site groups"
            ))
        })?;
        let site_url = Url::parse(site_url.trim_end_matches('/'))
            .map_err(|e| DatasourceError::Permanent(format!("the site URL is not a URL: {e}")))?;
        if !matches!(site_url.scheme(), "https" | "http") {
            return Err(DatasourceError::Permanent(format!(
                "the site URL uses the {} scheme",
                site_url.scheme()
            )));
        }
        let origin = origin_of(&site_url);
        let sharepoint = ResourceTokens {
            inner: tokens,
            resource: &origin,
        };
        let mut next = Url::parse(&format!(
            "{}/_api/web/sitegroups/GetById({group_id})/users",
            site_url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| DatasourceError::Permanent(format!("the site group URL is not a URL: {e}")))?;
        let mut principals: Vec<SharePointPrincipal> = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: SharePointPage<SharePointPrincipal> = self
                .client
                .get_json(&sharepoint, &next)
                .await
                .map_err(|e| match e {
                    // SharePoint refused these credentials (for an app-only connection: one made with a
                    // client secret). Not the user's sign-in failing: the group cannot be read this way.
                    DatasourceError::Unauthorized(why) => DatasourceError::NotFound(format!(
                        "SharePoint refused to list site group {group_id} with this connection's credentials \
                         (app-only connections need a certificate): {why}"
                    )),
                    other => other,
                })?;
            principals.extend(page.value);
            match page.next_link {
                Some(link) => {
                    let link = Url::parse(&link)
                        .map_err(|e| DatasourceError::Permanent(format!("a next link is not a URL: {e}")))?;
                    if origin_of(&link) != origin {
                        return Err(DatasourceError::Permanent(
                            "SharePoint's next link leaves the site's origin".into(),
                        ));
                    }
                    next = link;
                }
                None => return self.expand(tokens, principals).await,
            }
        }
        Err(DatasourceError::Permanent(format!(
            "site group {group_id} kept paging beyond {MAX_PAGES} pages"
        )))
    }

    /// Users as members; Entra groups expanded; everything else left out.
    async fn expand(
        &self,
        tokens: &dyn TokenSource,
        principals: Vec<SharePointPrincipal>,
    ) -> Result<Vec<GroupMember>, DatasourceError> {
        let mut members: Vec<GroupMember> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut add = |m: GroupMember, members: &mut Vec<GroupMember>| {
            let key =
                m.id.clone()
                    .or_else(|| m.emails.first().map(|e| e.to_ascii_lowercase()));
            if let Some(key) = key
                && seen.insert(key)
            {
                members.push(m);
            }
        };
        for p in principals {
            match p.principal_type {
                USER => {
                    let mut emails: Vec<String> = Vec::new();
                    for e in [p.email.as_deref(), p.user_principal_name.as_deref()]
                        .into_iter()
                        .flatten()
                        .map(str::trim)
                        .filter(|e| e.contains('@'))
                    {
                        if !emails.iter().any(|x| x.eq_ignore_ascii_case(e)) {
                            emails.push(e.to_owned());
                        }
                    }
                    if emails.is_empty() {
                        warn!(login = %p.login_name, "a site group user without mail or sign-in name is left out");
                        continue;
                    }
                    add(GroupMember { id: None, emails }, &mut members);
                }
                SECURITY_GROUP => {
                    let Some(group_id) = entra_group_of(&p.login_name) else {
                        warn!(login = %p.login_name, "a claim in a site group that names no Entra group is left out");
                        continue;
                    };
                    let group = Principal::Group {
                        id: Some(group_id.to_owned()),
                        email: p.email.clone().filter(|e| !e.is_empty()),
                        display_name: p.title.clone(),
                    };
                    match self.group_members(tokens, &group).await {
                        Ok(nested) => {
                            for m in nested {
                                add(m, &mut members);
                            }
                        }
                        Err(DatasourceError::NotFound(why)) => {
                            warn!(group.id = %group_id, reason = %why, "an Entra group in a site group is gone; left out");
                        }
                        Err(e) => return Err(e),
                    }
                }
                other => {
                    warn!(login = %p.login_name, principal_type = other, "a site group member of another kind is left out");
                }
            }
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_claims_name_entra_groups_and_other_claims_do_not() {
        let id = "a5f3c1d2-0000-4000-8000-000000000042";
        assert_eq!(entra_group_of(&format!("c:0t.c|tenant|{id}")), Some(id));
        assert_eq!(
            entra_group_of(&format!("c:0o.c|federateddirectoryclaimprovider|{id}")),
            Some(id)
        );
        // A Microsoft 365 group's owners, "everyone", and a user.
        assert_eq!(
            entra_group_of(&format!("c:0o.c|federateddirectoryclaimprovider|{id}_o")),
            None
        );
        assert_eq!(entra_group_of("c:0(.s|true"), None);
        assert_eq!(entra_group_of("i:0#.f|membership|adele@contoso.com"), None);
    }

    #[test]
    fn the_sharepoint_resource_is_the_site_origin() {
        let url = Url::parse("https://contoso.sharepoint.com/sites/team").unwrap();
        assert_eq!(origin_of(&url), "https://contoso.sharepoint.com");
        let local = Url::parse("http://127.0.0.1:8080/sites/team").unwrap();
        assert_eq!(origin_of(&local), "http://127.0.0.1:8080");
    }
}
