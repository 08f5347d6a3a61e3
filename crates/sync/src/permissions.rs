//! Permission sync: from a folder's sharing on the drive to read grants on the knowledge base.
//!
//! kbsync can only name its own users, so the mapping is deliberately narrow:
//!
//! * a **user with an email** grants read to the kbsync user with that email (compared
//!   case-insensitively); a person the drive names without an email, or whose email matches no
//!   kbsync user, grants nothing;
//! * a **group** (Entra group, SharePoint site group) grants nothing: kbsync has no groups and
//!   cannot expand their membership through the drive API, and guessing would over-share;
//! * a **link** with scope `anonymous` or `organization` opens the folder to everyone who has
//!   the link (or to the whole tenant). It grants nothing unless the administrator allowed it with
//!   [`PermissionPolicy::link_grants`]; then every kbsync user gets read. This keeps a private
//!   knowledge base from becoming visible to everyone by accident;
//! * a link with scope `users` (specific people) grants nothing by itself: the people it names
//!   are listed as users next to it, and those grant read as above. `existingAccess` and any
//!   other scope grant nothing.
//!
//! Every role (`read`, `write`, `owner`, …) maps to a read grant: permission sync only ever
//! makes readers; write access to a knowledge base is given by hand. A permission without any
//! role grants nothing.

use std::collections::BTreeSet;

use kbsync_core::datasource::{Principal, RemotePermission};

/// What permission sync may turn into grants, and how often it reads the sharing (an
/// administrator's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionPolicy {
    /// Whether a link open to anyone (`anonymous`) or to the whole organisation
    /// (`organization`) lets every kbsync user read the knowledge base. Off by default.
    pub link_grants: bool,
    /// The longest a knowledge base's sync grants go without reading its folders' sharing again.
    /// A run reads the sharing sooner when the change feed reports a sharing change, after a full
    /// enumeration, and when sources or users were added or removed; otherwise a run that finds
    /// nothing changed makes one request per folder source. Six hours by default.
    pub refresh: std::time::Duration,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            link_grants: false,
            refresh: std::time::Duration::from_secs(6 * 60 * 60),
        }
    }
}

/// Who one folder's sharing names, before it is matched to kbsync users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grantees {
    /// Lower-cased emails of the users the permissions name.
    pub emails: BTreeSet<String>,
    /// A link the policy lets count as "everyone".
    pub everyone: bool,
}

impl Grantees {
    /// Adds what another folder's sharing names (the union over all folder sources).
    pub fn merge(&mut self, other: Grantees) {
        self.emails.extend(other.emails);
        self.everyone |= other.everyone;
    }
}

/// Maps a folder's permissions to the principals kbsync can name (see the module docs).
pub fn grantees(permissions: &[RemotePermission], policy: PermissionPolicy) -> Grantees {
    let mut out = Grantees::default();
    for permission in permissions {
        if permission.roles.is_empty() {
            continue;
        }
        for principal in &permission.principals {
            match principal {
                Principal::User {
                    email: Some(email), ..
                } => {
                    let email = email.trim().to_lowercase();
                    if !email.is_empty() {
                        out.emails.insert(email);
                    }
                }
                Principal::User { email: None, .. }
                | Principal::Group { .. }
                | Principal::SiteGroup { .. } => {}
                Principal::Link { scope } => {
                    if policy.link_grants && matches!(scope.as_str(), "anonymous" | "organization") {
                        out.everyone = true;
                    }
                }
            }
        }
    }
    out
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

    fn user(email: Option<&str>) -> Principal {
        Principal::User {
            id: Some("u".into()),
            email: email.map(Into::into),
            display_name: Some("U".into()),
        }
    }

    fn link(scope: &str) -> Principal {
        Principal::Link { scope: scope.into() }
    }

    #[test]
    fn users_with_an_email_are_named_and_groups_and_mailless_users_are_not() {
        let perms = [
            perm(&["write"], vec![user(Some("Megan@Contoso.com"))]),
            perm(&["read"], vec![user(None)]),
            perm(
                &["read"],
                vec![Principal::Group {
                    id: Some("g".into()),
                    email: Some("sales@contoso.com".into()),
                    display_name: None,
                }],
            ),
            perm(&[], vec![user(Some("norole@contoso.com"))]),
            perm(&["read"], vec![link("users"), user(Some("friend@fabrikam.com"))]),
        ];
        let g = grantees(&perms, PermissionPolicy::default());
        assert_eq!(
            g.emails.into_iter().collect::<Vec<_>>(),
            ["friend@fabrikam.com", "megan@contoso.com"]
        );
        assert!(!g.everyone);
    }

    #[test]
    fn open_links_grant_everyone_only_when_the_policy_allows_it() {
        for scope in ["anonymous", "organization"] {
            let perms = [perm(&["read"], vec![link(scope)])];
            assert!(
                !grantees(
                    &perms,
                    PermissionPolicy {
                        link_grants: false,
                        ..Default::default()
                    }
                )
                .everyone
            );
            assert!(
                grantees(
                    &perms,
                    PermissionPolicy {
                        link_grants: true,
                        ..Default::default()
                    }
                )
                .everyone
            );
        }
        for scope in ["users", "existingAccess"] {
            let perms = [perm(&["read"], vec![link(scope)])];
            assert_eq!(
                grantees(
                    &perms,
                    PermissionPolicy {
                        link_grants: true,
                        ..Default::default()
                    }
                ),
                Grantees::default()
            );
        }
    }
}
