//! The Lua scripts that decide transitions inside Redis, loaded once and called by SHA.

use fred::prelude::{Client, Error};
use fred::types::scripts::Script;

const PRELUDE: &str = include_str!("prelude.lua");

/// Every presence script, each with the shared prelude in front.
pub struct Scripts {
    /// A connect or heartbeat write.
    pub seen: Script,
    /// A connection closed.
    pub leave: Script,
    /// Look at one user now.
    pub wake: Script,
    /// Every user whose deadline has passed.
    pub sweep: Script,
    /// The users online now.
    pub snapshot: Script,
    /// Many users' status.
    pub lookup: Script,
}

fn script(body: &str) -> Script {
    Script::from_lua(format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    /// The scripts with their SHA1s (computed here; loading is separate).
    pub fn new() -> Self {
        Scripts {
            seen: script(include_str!("seen.lua")),
            leave: script(include_str!("leave.lua")),
            wake: script(include_str!("wake.lua")),
            sweep: script(include_str!("sweep.lua")),
            snapshot: script(include_str!("snapshot.lua")),
            lookup: script(include_str!("lookup.lua")),
        }
    }

    /// Loads every script into Redis (after a connect: Redis may have restarted empty).
    pub async fn load(&self, client: &Client) -> Result<(), Error> {
        for script in [
            &self.seen,
            &self.leave,
            &self.wake,
            &self.sweep,
            &self.snapshot,
            &self.lookup,
        ] {
            script.load(client).await?;
        }
        Ok(())
    }
}
