//! Who may see whom, and who may join which group: rules only, no I/O.
//!
//! A viewer sees a user when they have the same tenant (or neither has one) and, when the
//! viewer's token lists groups (`channelIds`), the user is a member of one of them. The rule is
//! applied to the snapshot, every update and every lookup alike; a user the viewer may not see
//! is answered exactly as an unknown one. User and group ids are scoped by tenant ([`scoped`]),
//! so two tenants' user "42" or group "18" are different users and groups.

use crate::auth::Identity;
use crate::presence::{Audience, Update};
use std::sync::Arc;

/// Separates a tenant from an id in a scoped id (`{tenant}\u{1f}{id}`): the ASCII unit
/// separator, a control character, which no token's user id, tenant or group id may hold, so
/// that no scoped id can be read two ways.
const SCOPE_SEPARATOR: char = '\u{1f}';

/// The store's id of user or group `id` of `tenant`: the id as it is without a tenant (as
/// VoicePing names it), `{tenant}\u{1f}{id}` with one. Two tenants' user "42" (or group "18")
/// are two users (groups).
pub fn scoped(tenant: Option<&str>, id: &str) -> Arc<str> {
    match tenant {
        None => Arc::from(id),
        Some(tenant) => Arc::from(format!("{tenant}{SCOPE_SEPARATOR}{id}")),
    }
}

/// The id within its tenant, as clients name it.
pub fn unscoped(scoped: &str) -> &str {
    scoped
        .split_once(SCOPE_SEPARATOR)
        .map_or(scoped, |(_, id)| id)
}

/// The id of scoped id `scoped` within `tenant`, when it belongs to `tenant` (a membership set
/// may hold the groups of a tenant the user belonged to before).
pub fn in_tenant<'a>(scoped: &'a str, tenant: Option<&str>) -> Option<&'a str> {
    match tenant {
        None => (!scoped.contains(SCOPE_SEPARATOR)).then_some(scoped),
        Some(tenant) => scoped
            .strip_prefix(tenant)
            .and_then(|rest| rest.strip_prefix(SCOPE_SEPARATOR)),
    }
}

/// The store's id of a token's user: their user id scoped by their tenant.
pub fn user_key(identity: &Identity) -> Arc<str> {
    match identity.tenant.as_deref() {
        None => identity.user_id.clone(),
        tenant => scoped(tenant, &identity.user_id),
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
        .map(|g| scoped(tenant, g))
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
                let mut scoped: Vec<Arc<str>> = groups.iter().map(|g| scoped(tenant, g)).collect();
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

    /// Whether this viewer sees its whole tenant (its token lists no groups).
    pub fn whole_tenant(&self) -> bool {
        self.groups.is_none()
    }

    /// Whether this viewer may look at group `scoped` (its token lists the group, or no group
    /// at all): asking for another group's members would tell who is in it.
    pub fn watches(&self, scoped: &Arc<str>) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|mine| mine.binary_search(scoped).is_ok())
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
