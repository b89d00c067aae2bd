//! The Lua scripts of the Redis store, loaded once and called by SHA.

use fred::prelude::{Client, Error};
use fred::types::scripts::Script;

/// The store's scripts.
pub struct Scripts {
    /// Writes one user's decided record (a compare-and-set on its revision).
    pub apply: Script,
    /// Writes one decided floor (a compare-and-set on the talk holding it).
    pub floor: Script,
}

impl Scripts {
    /// The scripts with their SHA1s (computed here; loading is separate).
    pub fn new() -> Self {
        Scripts {
            apply: Script::from_lua(include_str!("apply.lua")),
            floor: Script::from_lua(include_str!("floor.lua")),
        }
    }

    /// Loads every script into Redis (after a connect: Redis may have restarted empty).
    pub async fn load(&self, client: &Client) -> Result<(), Error> {
        self.apply.load(client).await?;
        self.floor.load(client).await?;
        Ok(())
    }
}
