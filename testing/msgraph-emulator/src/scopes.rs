//! Which Microsoft Graph permissions a caller holds, and the sets each route accepts.
//!
//! Graph documents, per API, the least privileged permission and the higher privileged ones that also work; a
//! route accepts any of them. A token without one is refused before the route looks at its resource.

use crate::auth::AccessRecord;

/// `GET /groups/{id}/transitiveMembers`: GroupMember.Read.All, or a higher privileged permission
/// (learn.microsoft.com/graph/api/group-list-transitivemembers, "Permissions").
pub(crate) const GROUP_MEMBERS_READ: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
];

/// Site resources (`/sites`, `/sites/{id}` and what hangs below them): Sites.Read.All or higher
/// (learn.microsoft.com/graph/api/site-get and site-search, "Permissions").
pub(crate) const SITES_READ: &[&str] = &["Sites.Read.All", "Sites.ReadWrite.All", "Sites.FullControl.All"];

/// Whether the token grants one of `accepted` (case-insensitive; the `https://graph.microsoft.com/` resource
/// prefix a client may have asked with does not matter): a delegated scope (`scp`) or, for an app-only token,
/// an application permission (`roles`).
pub(crate) fn has_permission(record: &AccessRecord, accepted: &[&str]) -> bool {
    let roles = record.app.iter().flat_map(|a| a.roles.iter());
    record.scopes.iter().chain(roles).any(|granted| {
        let granted = granted
            .strip_prefix("https://graph.microsoft.com/")
            .unwrap_or(granted);
        accepted.iter().any(|a| a.eq_ignore_ascii_case(granted))
    })
}
