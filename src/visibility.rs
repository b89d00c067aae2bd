//! Who may see whom, and who may join which group: rules only, no I/O.
//!
//! A viewer sees a user when they have the same tenant (or neither has one) and, when the
//! viewer's token lists groups (`channelIds`), the user is a member of one of them. The rule is
//! applied to the snapshot, every update and every lookup alike; a user the viewer may not see
//! is answered exactly as an unknown one. Group ids are scoped by tenant, so two tenants'
//! group "18" are different groups.

use crate::auth::Identity;
use crate::presence::{Audience, Update};
use std::sync::Arc;

/// Separates a tenant from a group id in a scoped group id (`{tenant}:{group}`).
const SCOPE_SEPARATOR: char = ':';

/// The store's id of group `group` of `tenant`: the group id as it is without a tenant (as
/// VoicePing names it), `{tenant}:{group}` with one.
pub fn scoped_group(tenant: Option<&str>, group: &str) -> Arc<str> {
    match tenant {
        None => Arc::from(group),
        Some(tenant) => Arc::from(format!("{tenant}{SCOPE_SEPARATOR}{group}")),
    }
}

/// Whether scoped group id `scoped` belongs to `tenant` (a membership set may hold the groups
/// of a tenant the user belonged to before).
pub fn in_tenant(scoped: &str, tenant: Option<&str>) -> bool {
    match tenant {
        None => !scoped.contains(SCOPE_SEPARATOR),
        Some(tenant) => scoped
            .strip_prefix(tenant)
            .is_some_and(|rest| rest.starts_with(SCOPE_SEPARATOR)),
    }
}

/// Whether `identity` may join `group` (a wire id): any group when its token lists none, else
/// only those it lists.
pub fn may_join(identity: &Identity, group: &str) -> bool {
    identity
        .groups
        .as_ref()
        .is_none_or(|groups| groups.iter().any(|g| g.as_ref() == group))
}

/// What a connection joins at connect: its tenant, and the groups its token lists (one shared
/// value for the usual token with neither).
pub fn joining(identity: &Identity) -> Arc<Audience> {
    if identity.tenant.is_none() && identity.groups.is_none() {
        return Audience::none();
    }
    let tenant = identity.tenant.as_deref();
    let mut groups: Vec<Arc<str>> = identity
        .groups
        .iter()
        .flat_map(|groups| groups.iter())
        .map(|g| scoped_group(tenant, g))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups.truncate(crate::presence::MAX_GROUPS_PER_USER);
    Arc::new(Audience {
        tenant: identity.tenant.clone(),
        groups,
    })
}

/// What a viewer (a dashboard, a bulk API caller) may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    tenant: Option<Arc<str>>,
    /// The scoped groups of the viewer's token, sorted, when it lists any (a boxed slice:
    /// every dashboard session holds a viewer, most without groups).
    groups: Option<Box<[Arc<str>]>>,
}

/// What a viewer is to be told of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The update as it is.
    Update,
    /// The user left the viewer's sight: they are to be shown as a fresh snapshot would show
    /// them (not listed, that is offline), with the update's version.
    Hide,
    /// Nothing: the viewer could not see the user before and cannot now.
    Nothing,
}

impl Viewer {
    /// The viewer a token makes.
    pub fn of(identity: &Identity) -> Viewer {
        let tenant = identity.tenant.as_deref();
        Viewer {
            tenant: identity.tenant.clone(),
            groups: identity.groups.as_ref().map(|groups| {
                let mut scoped: Vec<Arc<str>> =
                    groups.iter().map(|g| scoped_group(tenant, g)).collect();
                scoped.sort_unstable();
                scoped.dedup();
                scoped.into_boxed_slice()
            }),
        }
    }

    /// The viewer's tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether this viewer sees a user with `audience`.
    pub fn sees(&self, audience: &Audience) -> bool {
        self.tenant == audience.tenant
            && self.groups.as_ref().is_none_or(|mine| {
                audience
                    .groups
                    .iter()
                    .any(|group| mine.binary_search(group).is_ok())
            })
    }

    /// What this viewer is told of `update`.
    pub fn show(&self, update: &Update) -> Show {
        let now = self.sees(&update.audience);
        let before = update.before.as_ref().map_or(now, |b| self.sees(b));
        match (before, now) {
            (_, true) => Show::Update,
            (true, false) => Show::Hide,
            (false, false) => Show::Nothing,
        }
    }
}

#[cfg(test)]
mod tests;
