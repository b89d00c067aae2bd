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

use clock::Clock;
use config::Config;
use store::MemoryStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs a router on `listener` with the store `config` calls for, until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, config: Config, shutdown: CancellationToken) {
    let clock = Clock::start();
    let store = MemoryStore::spawn(
        config.rules,
        clock,
        config.dashboard_queue,
        shutdown.clone(),
    );
    server::run(listener, config, store, clock, shutdown).await;
}
