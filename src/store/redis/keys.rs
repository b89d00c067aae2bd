//! The names of every Redis key and channel the store uses, under one configurable prefix
//! (`presence:` by default, the VoicePing seed's names), so that two deployments can share a
//! database.

use crate::presence::Status;

/// Key and channel names under one prefix (the fixed ones made once: every write names them).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// The prefix of the membership sets: none under the default prefix (VoicePing's names, so
    /// an existing deployment's membership is used as it is), the prefix otherwise.
    groups_prefix: String,
    deadlines: String,
    seq: String,
    updates: String,
    talk: String,
}

impl Keys {
    /// Names under `prefix` (e.g. `presence:`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            groups_prefix: if prefix == crate::config::defaults::REDIS_KEY_PREFIX {
                String::new()
            } else {
                prefix.to_owned()
            },
            deadlines: format!("{prefix}deadlines"),
            seq: format!("{prefix}seq"),
            updates: format!("{prefix}updates"),
            talk: format!("{prefix}talk"),
        }
    }

    /// `{prefix}user:{id}`: "1" with the TTL while the user is online (for outside readers and
    /// the keyspace expiry events).
    pub fn user(&self, user_id: &str) -> String {
        format!("{}user:{user_id}", self.prefix)
    }

    /// The prefix of [`Keys::user`] keys, to recognise them in expiry events.
    pub fn user_prefix(&self) -> String {
        format!("{}user:", self.prefix)
    }

    /// `{prefix}meta:{id}`: a hash with the user's record (`rec`), its revision (`rev`) and the
    /// seed's fields (`status`, `lastSeen`, `deviceId`, `role`, `version`).
    pub fn meta(&self, user_id: &str) -> String {
        format!("{}meta:{user_id}", self.prefix)
    }

    /// `u.{id}.g`: the groups of a user (VoicePing's set; tenant-scoped group ids).
    pub fn user_groups(&self, user_id: &str) -> String {
        format!("{}u.{user_id}.g", self.groups_prefix)
    }

    /// `g.{group}.u`: the members of a group (VoicePing's set).
    pub fn group_members(&self, group: &str) -> String {
        format!("{}g.{group}.u", self.groups_prefix)
    }

    /// `{prefix}deadlines`: online users by their next deadline (the sweeper's and the
    /// snapshot's index).
    pub fn deadlines(&self) -> String {
        self.deadlines.clone()
    }

    /// `{prefix}seq`: grows by one with each published change.
    pub fn seq(&self) -> String {
        self.seq.clone()
    }

    /// `{prefix}epoch`: names the generation of the data (see the rebuilder).
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// `{prefix}updates`: every change, as JSON.
    pub fn updates(&self) -> String {
        self.updates.clone()
    }

    /// `{prefix}floor:{key}`: a hash with a floor's talk (`talk`) and record (`rec`), expiring
    /// when the floor frees itself.
    pub fn floor(&self, key: &str) -> String {
        format!("{}floor:{key}", self.prefix)
    }

    /// `{prefix}floors`: every floor key by when it frees itself (the snapshot's on-air index).
    pub fn floors(&self) -> String {
        format!("{}floors", self.prefix)
    }

    /// `{prefix}talk`: talk and activity between routers (MessagePack).
    pub fn talk(&self) -> String {
        self.talk.clone()
    }

    /// `{prefix}online` / `{prefix}offline`: the same messages by status, for outside listeners.
    pub fn status_channel(&self, status: Status) -> String {
        match status {
            Status::Online => format!("{}online", self.prefix),
            Status::Offline => format!("{}offline", self.prefix),
        }
    }
}
