//! presence-router: who is online in a push-to-talk fleet.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`wire`] parses and writes frames, [`presence`]
//! holds the rules, [`store`] keeps the state, [`server`] is the network edge, [`config`] and
//! [`auth`] are read once at start.

pub mod auth;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod presence;
pub mod server;
pub mod store;
pub mod wire;
