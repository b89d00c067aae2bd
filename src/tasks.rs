//! Every task of a router has an owner: [`Tasks`] holds the one tracker and the one shutdown
//! token built in [`crate::serve`]; the server and the stores spawn on it, and a long-lived
//! task that ends before shutdown is recorded, so that `/health` and `/ready` report it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

/// The tracker, the shutdown token and the services that died. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    ended: Arc<Mutex<Vec<&'static str>>>,
}

impl Tasks {
    /// Tasks stopped by `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            shutdown,
            ended: Arc::default(),
        }
    }

    /// The token every task stops on.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The tracker every task is spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Spawns `task`, which should run until shutdown (a connection task, say, may end sooner:
    /// spawn it on [`Tasks::tracker`]).
    pub fn spawn_service<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(self.watch(name, task));
    }

    /// `task`, recording its end when that comes before shutdown.
    pub fn watch<F>(&self, name: &'static str, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tasks = self.clone();
        async move {
            task.await;
            if !tasks.shutdown.is_cancelled() {
                error!(task = name, "a background task ended unexpectedly");
                tasks
                    .ended
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(name);
            }
        }
    }

    /// The first service that ended before shutdown, if any.
    pub fn ended(&self) -> Option<&'static str> {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_service_that_ends_before_shutdown_is_reported() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn_service("sweeper", async {});
        tasks.tracker().close();
        tasks.tracker().wait().await;
        assert_eq!(tasks.ended(), Some("sweeper"));
    }

    #[tokio::test]
    async fn a_service_that_ends_at_shutdown_is_not() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.clone());
        let token = shutdown.clone();
        tasks.spawn_service("sweeper", async move { token.cancelled().await });
        shutdown.cancel();
        tasks.tracker().close();
        tasks.tracker().wait().await;
        assert_eq!(tasks.ended(), None);
    }
}
