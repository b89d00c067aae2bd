//! presence-router: who is online in a push-to-talk fleet.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`wire`] parses and writes frames, [`presence`]
//! holds the rules, [`store`] keeps the state, [`server`] is the network edge, [`config`] and
//! [`auth`] are read once at start.

pub mod auth;
pub mod clock;
pub mod config;
pub mod jwks;
pub mod metrics;
pub mod presence;
pub mod ptt;
pub mod server;
pub mod store;
pub mod tasks;
pub mod visibility;
pub mod wire;

use clock::Clock;
use config::Config;
use std::time::Duration;
use store::{MemoryStore, RedisStore, StoreError};
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the Redis store may take to send the writes left at shutdown.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// Runs a router on `listener` with the store `config` calls for (Redis when a Redis URL is set,
/// the embedded store otherwise), until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    serve_with_admin(listener, None, config, shutdown).await
}

/// As [`serve`], with `/health`, `/ready` and `/metrics` on `admin` instead of `listener` when
/// there is one (`ADMIN_PORT`).
pub async fn serve_with_admin(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let clock = Clock::start();
    let tasks = Tasks::new(shutdown);
    let listeners = server::Listeners {
        public: listener,
        admin,
    };
    match config.redis_url.clone() {
        None => {
            let store = MemoryStore::spawn(config.rules, clock, config.dashboard_queue, &tasks);
            server::run(listeners, config, store, clock, tasks).await;
        }
        Some(url) => {
            let (store, drain) = RedisStore::start(
                &url,
                &config.redis_key_prefix,
                config.rules,
                clock,
                config.dashboard_queue,
                &tasks,
            )
            .await?;
            server::run(listeners, config, store, clock, tasks).await;
            drain.wait(DRAIN_LIMIT).await;
        }
    }
    Ok(())
}
