//! Live console updates over Server-Sent Events: one watcher per server
//! process notices that the cluster changed, and every open page's stream
//! renders its own fragment again and sends it when it differs.
//!
//! The watcher looks every half second at what moves with every change:
//! the newest history entry of any request (every status change of any
//! server writes one), the servers' statuses, incarnations and flow sets,
//! and this server's own checkpoint count. One indexed read per process,
//! not per open page; pages keep a slow poll as the fallback.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use baton_core::store::{Store, StoreError};
use futures_util::Stream;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the watcher looks.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The cluster's changes as this server sees them, for the open pages.
#[derive(Clone)]
pub struct LiveFeed {
    changes: watch::Receiver<u64>,
    closing: Arc<watch::Sender<bool>>,
}

impl LiveFeed {
    /// A feed and the watcher that drives it (it ends when the task is
    /// aborted, and so do the streams).
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (changed, changes) = watch::channel(0);
        let watcher = tokio::spawn(watch_cluster(store, metrics, changed));
        let feed = Self {
            changes,
            closing: Arc::new(watch::channel(false).0),
        };
        (feed, watcher)
    }

    /// Ends every stream: the server is stopping, and its graceful
    /// shutdown waits for open connections.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves at the next change; `false` once the feed is closed.
    async fn next(&mut self, closing: &mut watch::Receiver<bool>) -> bool {
        if *closing.borrow() {
            return false;
        }
        tokio::select! {
            changed = self.changes.changed() => changed.is_ok() && !*closing.borrow(),
            _ = closing.changed() => false,
        }
    }
}

async fn watch_cluster(store: Arc<dyn Store>, metrics: Arc<Metrics>, changed: watch::Sender<u64>) {
    let mut last = None;
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let mark = async {
            let servers: Vec<String> = store
                .servers()
                .await?
                .iter()
                .map(|s| {
                    format!(
                        "{}|{}|{}|{}|{:?}|{:?}",
                        s.id,
                        s.name,
                        s.status.as_str(),
                        s.incarnation,
                        s.flow_set,
                        s.flows_head
                    )
                })
                .collect();
            Ok::<_, StoreError>((store.last_event().await?, servers, metrics.checkpoints()))
        };
        if let Ok(mark) = mark.await
            && last.as_ref() != Some(&mark)
        {
            last = Some(mark);
            changed.send_modify(|version| *version += 1);
        }
    }
}

/// A stream of `event` carrying what `render` gives after each change of
/// the cluster, when it differs from what it sent last.
pub fn stream<R, F>(
    feed: &LiveFeed,
    event: &'static str,
    render: R,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<R, F>>
where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Option<String>> + Send,
{
    let state = (
        feed.clone(),
        feed.closing.subscribe(),
        render,
        None::<String>,
    );
    let events = futures_util::stream::unfold(
        state,
        move |(mut feed, mut closing, render, last)| async move {
            loop {
                if !feed.next(&mut closing).await {
                    return None;
                }
                if let Some(html) = render().await
                    && last.as_ref() != Some(&html)
                {
                    let event = Event::default().event(event).data(&html);
                    return Some((Ok(event), (feed, closing, render, Some(html))));
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
