//! Permissions set on items through the control API: a [`PermissionSpec`] (a user, a group, a site group or a
//! sharing link) and how it becomes a stored permission with its ids and grantee.

use crate::store::{Grantee, LinkUser, StoreError, StoredPermission};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

/// A permission to set on an item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PermissionSpec {
    /// A user: an emulator user by id, or an external person by name (and email).
    User {
        #[serde(default)]
        user_id: Option<String>,
        #[serde(default)]
        display_name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        /// Whether the identity carries `email` (Graph sometimes omits it).
        #[serde(default = "yes")]
        include_email: bool,
        roles: Vec<String>,
    },
    /// An Entra (Microsoft 365 or security) group.
    Group {
        #[serde(default)]
        group_id: Option<String>,
        display_name: String,
        #[serde(default)]
        email: Option<String>,
        roles: Vec<String>,
    },
    /// A SharePoint site group (Owners / Members / Visitors or custom).
    SiteGroup {
        #[serde(default)]
        site_group_id: Option<String>,
        display_name: String,
        roles: Vec<String>,
    },
    /// A sharing link: `link_type` view/edit/embed, `scope` anonymous/organization/users/existingAccess.
    Link {
        link_type: String,
        scope: String,
        #[serde(default)]
        users: Vec<LinkUser>,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        prevents_download: bool,
    },
}

impl PermissionSpec {
    /// A user permission for an emulator user.
    pub fn user(user_id: &str, roles: &[&str]) -> Self {
        PermissionSpec::User {
            user_id: Some(user_id.into()),
            display_name: None,
            email: None,
            include_email: true,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
    /// A sharing link.
    pub fn link(link_type: &str, scope: &str) -> Self {
        PermissionSpec::Link {
            link_type: link_type.into(),
            scope: scope.into(),
            users: Vec::new(),
            roles: Vec::new(),
            prevents_download: false,
        }
    }
}

fn roles_or(roles: Vec<String>, default: &str) -> Vec<String> {
    if roles.is_empty() {
        vec![default.to_string()]
    } else {
        roles
    }
}

pub(crate) fn build_permission(
    s: &mut crate::store::Store,
    drive_id: &str,
    spec: PermissionSpec,
) -> Result<StoredPermission, StoreError> {
    let id = s.ids.token(24);
    let guid = s.ids.guid();
    let share = s.ids.token(40);
    let web_base = s.web_base.clone();
    let (grantee, roles) = match spec {
        PermissionSpec::User {
            user_id,
            display_name,
            email,
            include_email,
            roles,
        } => {
            let (uid, name, mail, login) = match user_id {
                Some(uid) => {
                    let u = s.user(&uid)?;
                    (
                        u.id.clone(),
                        display_name.unwrap_or_else(|| u.display_name.clone()),
                        email.or_else(|| u.mail.clone()),
                        u.upn.clone(),
                    )
                }
                None => {
                    let name = display_name.ok_or_else(|| {
                        StoreError::Invalid("a user permission needs user_id or display_name".into())
                    })?;
                    let login = email.clone().unwrap_or_else(|| name.clone());
                    (guid, name, email, login)
                }
            };
            let site_user_id = s.drive_mut(drive_id)?.next_site_user_id();
            (
                Grantee::User {
                    user_id: uid,
                    display_name: name,
                    email: if include_email { mail } else { None },
                    login,
                    site_user_id,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::Group {
            group_id,
            display_name,
            email,
            roles,
        } => {
            let site_user_id = s.drive_mut(drive_id)?.next_site_user_id();
            let group_id = group_id.unwrap_or(guid);
            // A permission names a group of the directory: one it does not know yet joins it.
            s.ensure_group(&group_id, Some(&display_name), email.as_deref());
            (
                Grantee::Group {
                    group_id,
                    display_name,
                    email,
                    site_user_id,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::SiteGroup {
            site_group_id,
            display_name,
            roles,
        } => {
            let id = match site_group_id {
                Some(i) => i,
                None => s.drive_mut(drive_id)?.next_site_user_id().to_string(),
            };
            (
                Grantee::SiteGroup {
                    site_group_id: id,
                    display_name,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::Link {
            link_type,
            scope,
            users,
            roles,
            prevents_download,
        } => {
            if !matches!(
                scope.as_str(),
                "anonymous" | "organization" | "users" | "existingAccess"
            ) {
                return Err(StoreError::Invalid(format!("unknown link scope {scope:?}")));
            }
            let default_role = if link_type == "edit" { "write" } else { "read" };
            (
                Grantee::Link {
                    link_type,
                    scope,
                    web_url: format!("{web_base}/:f:/s/{share}"),
                    prevents_download,
                    users,
                },
                roles_or(roles, default_role),
            )
        }
    };
    let share_id = matches!(grantee, Grantee::Link { .. }).then(|| format!("s!{share}"));
    Ok(StoredPermission {
        id,
        roles,
        grantee,
        share_id,
    })
}
