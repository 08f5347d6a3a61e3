//! Permission sync: from an item's permissions at the source to the principals of its
//! document's access list, and from a group's members to the principals they match.
//!
//! A principal is a text key that a kbsync user can be matched against (see
//! `kbsync_store::AccessStore`):
//!
//! * a **user** is `user:<id at the source>` and `email:<lower-cased address>` (either matches);
//!   a user the source names without an id or an address names no one;
//! * a **directory group** is `group:<id>` and a **site group** `sitegroup:<id>@<site>`; a kbsync
//!   user matches them through the group's members, which sync expands from the source;
//! * a **link** with scope `anonymous` or `organization` opens the item to anyone with the link
//!   (or the whole tenant). It is `everyone` — every signed-in kbsync user — only when the
//!   administrator allowed it with [`PermissionPolicy::link_grants`]; otherwise it names no one,
//!   so a private document never becomes visible to everyone by accident;
//! * a link with scope `users` (specific people) names no one by itself: the people it names are
//!   listed as users next to it. `existingAccess` and any other scope name no one.
//!
//! Every role (`read`, `write`, `owner`, …) lets its principals read: documents are only ever
//! read through kbsync. A permission without any role names no one.

use std::collections::BTreeSet;

use kbsync_core::datasource::{GroupMember, Principal, RemotePermission};

/// What permission sync may turn into access, and how often it reads it (an administrator's
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionPolicy {
    /// Whether a link open to anyone (`anonymous`) or to the whole organisation
    /// (`organization`) lets every kbsync user read the item. Off by default.
    pub link_grants: bool,
    /// The longest a knowledge base goes without reading every permission of its sources
    /// again. Between those reads a run reads only the items the change feed reports as changed
    /// in their sharing (and new roots of permission hierarchies). Six hours by default.
    pub refresh: std::time::Duration,
    /// The longest a group's expanded members are used before they are read again from the
    /// source. A group named for the first time is expanded at once. An hour by default.
    pub group_refresh: std::time::Duration,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            link_grants: false,
            refresh: std::time::Duration::from_secs(6 * 60 * 60),
            group_refresh: std::time::Duration::from_secs(60 * 60),
        }
    }
}

/// The principal keys an item's permissions name (see the module docs), sorted and unique.
pub fn principal_keys(permissions: &[RemotePermission], policy: PermissionPolicy) -> Vec<String> {
    let mut out = BTreeSet::new();
    for permission in permissions {
        if permission.roles.is_empty() {
            continue;
        }
        for principal in &permission.principals {
            match principal {
                Principal::User { id, email, .. } => {
                    if let Some(id) = id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
                        out.insert(format!("user:{id}"));
                    }
                    if let Some(email) = email.as_deref().and_then(email_key) {
                        out.insert(email);
                    }
                }
                Principal::Group { id: Some(id), .. } if !id.trim().is_empty() => {
                    out.insert(format!("group:{}", id.trim()));
                }
                Principal::Group { .. } => {}
                Principal::SiteGroup { site, id, .. } => {
                    out.insert(format!("sitegroup:{id}@{site}"));
                }
                Principal::Link { scope } => {
                    if policy.link_grants && matches!(scope.as_str(), "anonymous" | "organization") {
                        out.insert(kbsync_store::EVERYONE.to_owned());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// `email:<address>`, lower-cased and trimmed; `None` for an empty address.
fn email_key(address: &str) -> Option<String> {
    let address = address.trim().to_lowercase();
    (!address.is_empty()).then(|| format!("email:{address}"))
}

/// The principal keys a group's members match: each member's `user:` id and `email:` addresses.
pub fn member_keys(members: &[GroupMember]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for member in members {
        if let Some(id) = member.id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
            out.insert(format!("user:{id}"));
        }
        out.extend(member.emails.iter().filter_map(|e| email_key(e)));
    }
    out.into_iter().collect()
}

/// The group a `group:` or `sitegroup:` key names, to ask the datasource for its members.
pub fn group_of(key: &str) -> Option<Principal> {
    if let Some(id) = key.strip_prefix("group:") {
        return Some(Principal::Group {
            id: Some(id.to_owned()),
            email: None,
            display_name: None,
        });
    }
    let rest = key.strip_prefix("sitegroup:")?;
    let (id, site) = rest.split_once('@')?;
    Some(Principal::SiteGroup {
        site: site.to_owned(),
        id: id.to_owned(),
        display_name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(roles: &[&str], principals: Vec<Principal>) -> RemotePermission {
        RemotePermission {
            id: "p".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            principals,
            inherited_from: None,
        }
    }

    fn user(id: Option<&str>, email: Option<&str>) -> Principal {
        Principal::User {
            id: id.map(Into::into),
            email: email.map(Into::into),
            display_name: Some("U".into()),
        }
    }

    fn link(scope: &str) -> Principal {
        Principal::Link { scope: scope.into() }
    }

    #[test]
    fn users_groups_and_site_groups_become_keys_and_roleless_permissions_name_no_one() {
        let perms = [
            perm(&["write"], vec![user(Some("u-1"), Some(" Megan@Contoso.com "))]),
            perm(&["read"], vec![user(None, None)]),
            perm(
                &["read"],
                vec![Principal::Group {
                    id: Some("g-1".into()),
                    email: Some("sales@contoso.com".into()),
                    display_name: None,
                }],
            ),
            perm(
                &["read"],
                vec![Principal::SiteGroup {
                    site: "b!drive".into(),
                    id: "5".into(),
                    display_name: None,
                }],
            ),
            perm(&[], vec![user(Some("u-2"), Some("norole@contoso.com"))]),
            perm(
                &["read"],
                vec![link("users"), user(None, Some("friend@fabrikam.com"))],
            ),
        ];
        assert_eq!(
            principal_keys(&perms, PermissionPolicy::default()),
            [
                "email:friend@fabrikam.com",
                "email:megan@contoso.com",
                "group:g-1",
                "sitegroup:5@b!drive",
                "user:u-1"
            ]
        );
    }

    #[test]
    fn open_links_name_everyone_only_when_the_policy_allows_it() {
        let on = PermissionPolicy {
            link_grants: true,
            ..Default::default()
        };
        for scope in ["anonymous", "organization"] {
            let perms = [perm(&["read"], vec![link(scope)])];
            assert!(principal_keys(&perms, PermissionPolicy::default()).is_empty());
            assert_eq!(principal_keys(&perms, on), [kbsync_store::EVERYONE]);
        }
        for scope in ["users", "existingAccess"] {
            let perms = [perm(&["read"], vec![link(scope)])];
            assert!(principal_keys(&perms, on).is_empty());
        }
    }

    #[test]
    fn group_keys_name_their_group_again_and_members_match_by_id_and_address() {
        assert_eq!(
            group_of("group:g-1"),
            Some(Principal::Group {
                id: Some("g-1".into()),
                email: None,
                display_name: None
            })
        );
        assert_eq!(
            group_of("sitegroup:5@b!x@y"),
            Some(Principal::SiteGroup {
                site: "b!x@y".into(),
                id: "5".into(),
                display_name: None
            })
        );
        assert_eq!(group_of("user:u"), None);
        let members = [
            GroupMember {
                id: Some("u-1".into()),
                emails: vec!["Bob@Contoso.com".into(), "bob@contoso.com".into()],
            },
            GroupMember {
                id: None,
                emails: vec![" ".into()],
            },
        ];
        assert_eq!(member_keys(&members), ["email:bob@contoso.com", "user:u-1"]);
    }
}
