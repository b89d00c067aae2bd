//! A dashboard's view, kept exactly as `protocol/PROTOCOL.md` tells a client to keep it: a
//! snapshot replaces it; an update applies when its version is above the one held.

use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};

/// userId → (online, version), as a dashboard holds it.
#[derive(Debug, Default)]
pub struct ProtocolView {
    users: HashMap<String, (bool, u64)>,
}

impl ProtocolView {
    /// Applies one frame; returns the user ids it named (none for a frame that is neither a
    /// snapshot nor an update).
    pub fn apply(&mut self, frame: &Json) -> Vec<String> {
        let payload = &frame[4];
        let id = |user: &Json| user["userId"].as_str().unwrap_or_default().to_owned();
        let version = |user: &Json| user["version"].as_u64().unwrap_or(0);
        match frame[1].as_u64() {
            Some(32) => {
                self.users.clear();
                let listed = payload["users"].as_array().into_iter().flatten();
                listed
                    .map(|user| {
                        self.users.insert(id(user), (true, version(user)));
                        id(user)
                    })
                    .collect()
            }
            Some(31) => {
                let held = self.users.get(&id(payload)).map_or(0, |(_, v)| *v);
                if version(payload) > held {
                    let online = payload["status"] == "online";
                    self.users.insert(id(payload), (online, version(payload)));
                }
                vec![id(payload)]
            }
            _ => Vec::new(),
        }
    }

    /// Whether `user` is shown online.
    pub fn shows(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|(online, _)| *online)
    }

    /// The users shown online.
    pub fn online(&self) -> BTreeSet<String> {
        self.users
            .iter()
            .filter(|(_, (online, _))| *online)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
