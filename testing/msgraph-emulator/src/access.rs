//! Per-user read access and "shared with me".
//!
//! A user may read an item when, walking from the item up to the drive root:
//!
//! 1. the nearest explicit rule set by the control API (`revoke_access` / `grant_access`) decides, if any;
//! 2. otherwise the user owns the drive, or a permission on the item or an ancestor names them: a user
//!    permission for them, an Entra group permission for a group they are a member of (directly or through
//!    nested groups, as Entra evaluates group-based access transitively), a SharePoint site group
//!    permission for a site group they are a member of, a `users` link listing their mail or UPN, or an
//!    `organization` link (every emulator user belongs to the one tenant).
//!
//! Anonymous and `existingAccess` links grant nothing by themselves (an anonymous link is redeemed through
//! `/shares`, which the emulator does not serve). Permissions only add access, so a readable folder's subtree is
//! readable unless a `revoke_access` rule sits below it.

use crate::store::{Drive, DriveOwner, Grantee, Item, Store, StoredPermission, User};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An Entra (directory) group: what `/groups/{id}/transitiveMembers` and group permissions name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryGroup {
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
}

/// Access rules and memberships. Part of the [`Store`], so `reset` restores them.
#[derive(Debug, Clone, Default)]
pub struct AccessState {
    /// (user id, drive id) → item id → `true` (granted) / `false` (revoked); applies to the item's subtree.
    pub rules: HashMap<(String, String), HashMap<String, bool>>,
    /// The directory's groups by id.
    pub groups: BTreeMap<String, DirectoryGroup>,
    /// Entra group id → member user ids (direct members).
    pub group_members: BTreeMap<String, BTreeSet<String>>,
    /// Entra group id → member group ids (direct members; their members are the group's members too).
    pub group_member_groups: BTreeMap<String, BTreeSet<String>>,
    /// (site id, site group id) → member user ids.
    pub site_group_members: BTreeMap<(String, String), BTreeSet<String>>,
    /// (site id, site group id) → Entra group ids that are members of the site group.
    pub site_group_groups: BTreeMap<(String, String), BTreeSet<String>>,
}

fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn link_lists_user(users: &[crate::store::LinkUser], user: &User) -> bool {
    users.iter().any(|lu| {
        lu.email.as_deref().is_some_and(|e| {
            same_address(e, &user.upn) || user.mail.as_deref().is_some_and(|m| same_address(e, m))
        })
    })
}

/// Every member of a group, nested groups resolved: users and groups, each once, in the order a
/// breadth-first walk meets them (direct members first). Cycles are walked once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitiveMembers {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Store {
    /// The directory group `id`, created with `display_name` and `mail` when the directory does not know it yet.
    pub fn ensure_group(
        &mut self,
        id: &str,
        display_name: Option<&str>,
        mail: Option<&str>,
    ) -> &DirectoryGroup {
        self.access
            .groups
            .entry(id.to_string())
            .or_insert_with(|| DirectoryGroup {
                id: id.to_string(),
                display_name: display_name.unwrap_or(id).to_string(),
                mail: mail.map(str::to_string),
            })
    }

    /// Every user and group in `group_id`, through nested groups (the group itself is not listed).
    pub fn transitive_members(&self, group_id: &str) -> TransitiveMembers {
        let mut out = TransitiveMembers::default();
        let mut seen_users = BTreeSet::new();
        let mut seen_groups = BTreeSet::from([group_id.to_string()]);
        let mut queue = std::collections::VecDeque::from([group_id.to_string()]);
        while let Some(g) = queue.pop_front() {
            for u in self.access.group_members.get(&g).into_iter().flatten() {
                if seen_users.insert(u.clone()) {
                    out.users.push(u.clone());
                }
            }
            for m in self.access.group_member_groups.get(&g).into_iter().flatten() {
                if seen_groups.insert(m.clone()) {
                    out.groups.push(m.clone());
                    queue.push_back(m.clone());
                }
            }
        }
        out
    }

    /// Whether `user_id` is in the group, directly or through nested groups.
    pub fn in_group(&self, group_id: &str, user_id: &str) -> bool {
        self.transitive_members(group_id)
            .users
            .iter()
            .any(|u| u == user_id)
    }

    /// Whether a permission shares the item with `user` in person: a user permission for them, a group they are
    /// in, or a `users` link that lists them. This is what "shared with me" lists.
    pub fn shares_with(&self, p: &StoredPermission, user: &User) -> bool {
        match &p.grantee {
            Grantee::User { user_id, .. } => *user_id == user.id,
            Grantee::Group { group_id, .. } => self.in_group(group_id, &user.id),
            Grantee::Link { scope, users, .. } => scope == "users" && link_lists_user(users, user),
            Grantee::SiteGroup { .. } => false,
        }
    }

    /// Whether a permission on an item of `drive` lets `user` read it.
    fn permission_grants(&self, drive: &Drive, p: &StoredPermission, user: &User) -> bool {
        if self.shares_with(p, user) {
            return true;
        }
        match &p.grantee {
            Grantee::SiteGroup { site_group_id, .. } => drive.site_id.as_ref().is_some_and(|site| {
                let key = (site.clone(), site_group_id.clone());
                self.access
                    .site_group_members
                    .get(&key)
                    .is_some_and(|m| m.contains(&user.id))
                    || self.access.site_group_groups.get(&key).is_some_and(|groups| {
                        groups.iter().any(|g| {
                            self.access
                                .group_members
                                .get(g)
                                .is_some_and(|m| m.contains(&user.id))
                        })
                    })
            }),
            Grantee::Link { scope, .. } => scope == "organization",
            _ => false,
        }
    }

    /// Whether `user_id` may read item `item_id` of `drive` (see the module documentation).
    pub fn can_read(&self, user_id: &str, drive: &Drive, item_id: &str) -> bool {
        // An application calling app-only has passed its permission check (Sites.Read.All, Files.Read.All):
        // those cover every drive of the tenant.
        if self.is_app_caller(user_id) {
            return true;
        }
        let Some(user) = self.users.get(user_id) else {
            return false;
        };
        let rules = self.access.rules.get(&(user_id.to_string(), drive.id.clone()));
        let owner = matches!(&drive.owner, DriveOwner::User(u) if u == user_id);
        let mut granted = owner;
        let mut cur = Some(item_id);
        let mut guard = 0;
        while let Some(id) = cur {
            guard += 1;
            if guard > 100_000 {
                break;
            }
            if let Some(rule) = rules.and_then(|r| r.get(id)) {
                return *rule;
            }
            let Some(item) = drive.items.get(id) else {
                break;
            };
            if !granted
                && item
                    .permissions
                    .iter()
                    .any(|p| self.permission_grants(drive, p, user))
            {
                granted = true;
            }
            if granted && rules.is_none() {
                return true;
            }
            // Explicit rules outrank ownership and permissions, so keep walking up to find one.
            cur = item.parent_id.as_deref();
        }
        granted
    }

    /// Whether `user_id` can see anything in `drive`: the drive resource answers only then.
    pub fn can_see_drive(&self, user_id: &str, drive: &Drive) -> bool {
        if self.can_read(user_id, drive, &drive.root_id) {
            return true;
        }
        let rules = self.access.rules.get(&(user_id.to_string(), drive.id.clone()));
        let owner = matches!(&drive.owner, DriveOwner::User(u) if u == user_id);
        drive.items.values().filter(|i| i.is_live()).any(|i| {
            let candidate =
                owner || !i.permissions.is_empty() || rules.is_some_and(|r| r.get(&i.id) == Some(&true));
            candidate && self.can_read(user_id, drive, &i.id)
        })
    }

    /// Whether some explicit revoke rule exists for this user on this drive (then listings must filter).
    pub fn has_revocations(&self, user_id: &str, drive_id: &str) -> bool {
        self.access
            .rules
            .get(&(user_id.to_string(), drive_id.to_string()))
            .is_some_and(|r| r.values().any(|granted| !granted))
    }

    /// Items of other users' drives (and of libraries) shared with `user_id` in person, in a stable order:
    /// drives by id, items by creation. Roots are never listed, nor items the user cannot read.
    pub fn shared_with_me(&self, user_id: &str) -> Vec<(&Drive, &Item)> {
        let Some(user) = self.users.get(user_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for drive in self.drives.values() {
            if matches!(&drive.owner, DriveOwner::User(u) if u == user_id) {
                continue;
            }
            let mut items: Vec<&Item> = drive
                .items
                .values()
                .filter(|i| i.is_live() && i.parent_id.is_some())
                .filter(|i| i.permissions.iter().any(|p| self.shares_with(p, user)))
                .filter(|i| self.can_read(user_id, drive, &i.id))
                .collect();
            items.sort_by_key(|i| i.created_seq);
            out.extend(items.into_iter().map(|i| (drive, i)));
        }
        out
    }

    /// Sets (`true` grant, `false` revoke) the explicit rule for a user at an item (and its subtree).
    pub fn set_access_rule(&mut self, user_id: &str, drive_id: &str, item_id: &str, grant: bool) {
        self.access
            .rules
            .entry((user_id.to_string(), drive_id.to_string()))
            .or_default()
            .insert(item_id.to_string(), grant);
    }
}
