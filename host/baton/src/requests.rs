//! The operator's and the caller's use cases on requests: submit, cancel,
//! re-execute, send an event. The HTTP API, the console, the scheduler and the bench all
//! come here, so a request starts, stops and starts over the same way
//! whoever asks; the adapters only parse, authorise and render.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_core::store::{
    NewRequest, RequestFilter, RequestRow, Store, StoreError, StoredPayload, VersionRow,
};
use tokio::sync::broadcast;

use crate::engine::checkpoint::Abort;
use crate::engine::cluster::Cluster;
use crate::engine::executor::Executor;
use crate::trace::SpanContext;

/// Why a request was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The input is not JSON.
    #[error("the input is not valid JSON: {0}")]
    InvalidInput(serde_json::Error),
    /// No flow by that name is deployed; the closest names that are.
    #[error("there is no flow named {name:?}{}", suggest(.closest))]
    UnknownFlow {
        /// The name asked for.
        name: String,
        /// Deployed flows with a name close to it, closest first.
        closest: Vec<String>,
    },
    /// The idempotency key is empty, too long, not printable ASCII, or
    /// Baton's own (a child flow's start).
    #[error(
        "an idempotency key is 1 to {MAX_KEY_LEN} printable ASCII characters, not starting with \"baton:\""
    )]
    InvalidKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest idempotency key.
pub const MAX_KEY_LEN: usize = 255;

/// Why an event was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The name is empty, too long or holds control characters.
    #[error("an event name is 1 to {MAX_EVENT_NAME} characters, none of them control characters")]
    InvalidName,
    /// The payload is not JSON.
    #[error("the event is not valid JSON: {0}")]
    InvalidPayload(serde_json::Error),
    /// The payload is larger than an inbox keeps.
    #[error("an event is at most {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    /// The idempotency key is not one a start would take either.
    #[error(
        "an idempotency key is 1 to {MAX_KEY_LEN} printable ASCII characters, not starting with \"baton:\""
    )]
    InvalidKey,
    /// The store refused or failed (no such request, a finished one).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An idempotency key a caller may choose: printable ASCII, not Baton's
/// own (child flows' starts use `baton:`).
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !key.starts_with("baton:")
}

/// Longest event name.
pub const MAX_EVENT_NAME: usize = 100;

/// Largest event payload: events are signals, kept in the database row.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// A submitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its ID.
    pub id: String,
    /// False when an idempotency key named a request started before with
    /// the same input: that one is answered and nothing is created.
    pub created: bool,
}

/// Requests as this server handles them.
#[derive(Clone)]
pub struct Requests {
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    cluster: Arc<Cluster>,
    /// Each flow's active version as last read here. A start asks the
    /// store to create its request only while the version is still
    /// active, so a deploy since (here or on another server) costs that
    /// start one more read, and every other start none.
    active_versions: Arc<Mutex<HashMap<String, Arc<VersionRow>>>>,
}

impl Requests {
    /// Use cases run by `cluster`'s server with `executor`.
    pub fn new(store: Arc<dyn Store>, executor: Arc<Executor>, cluster: Arc<Cluster>) -> Self {
        Self {
            store,
            executor,
            cluster,
            active_versions: Arc::default(),
        }
    }

    /// Starts the active version of `flow` on `input` (JSON; empty or
    /// blank means `null`). The request is owned here and claimed at once
    /// when a slot is free, so it starts without waiting for the next poll.
    ///
    /// With a `key`, at most one request of the flow is ever created for
    /// it: a start retried with the same key and input answers the first
    /// request (whatever its status), one with another input is refused.
    pub async fn submit(
        &self,
        flow: &str,
        input: &[u8],
        key: Option<&str>,
    ) -> Result<Submitted, SubmitError> {
        if key.is_some_and(|key| !valid_key(key)) {
            return Err(SubmitError::InvalidKey);
        }
        let input = if input.iter().all(u8::is_ascii_whitespace) {
            &b"null"[..]
        } else {
            input
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(input)
            .map_err(SubmitError::InvalidInput)?;
        let (version, cached) = self.active_version(flow).await?;
        let input = self.store.put_payload(input.to_vec())?;
        match self.create(&version, input.clone(), key).await {
            Err(SubmitError::Store(StoreError::VersionReplaced { .. })) if cached => {
                // A deploy came in since this server read the version.
                self.active_versions
                    .lock()
                    .expect("active versions lock")
                    .remove(flow);
                let (version, _) = self.active_version(flow).await?;
                self.create(&version, input, key).await
            }
            created => created,
        }
    }

    /// The active version of `flow`, and whether it was known here already
    /// (read earlier, so perhaps replaced since).
    async fn active_version(&self, flow: &str) -> Result<(Arc<VersionRow>, bool), SubmitError> {
        if let Some(known) = self
            .active_versions
            .lock()
            .expect("active versions lock")
            .get(flow)
        {
            return Ok((known.clone(), true));
        }
        let Some(version) = self.store.active_version(flow).await? else {
            let flows = self.store.flows().await?;
            return Err(SubmitError::UnknownFlow {
                name: flow.to_owned(),
                closest: closest(flow, flows.iter().map(|f| f.name.as_str())),
            });
        };
        let version = Arc::new(version);
        self.active_versions
            .lock()
            .expect("active versions lock")
            .insert(flow.to_owned(), version.clone());
        Ok((version, false))
    }

    /// Creates a request of `version`, while it is its flow's active one,
    /// claimed at once when a slot is free.
    async fn create(
        &self,
        version: &VersionRow,
        input: StoredPayload,
        key: Option<&str>,
    ) -> Result<Submitted, SubmitError> {
        let flow = version.flow.as_str();
        let mut request = NewRequest::of_version(
            version,
            self.store.new_request_id(),
            (&self.cluster.id, self.cluster.incarnation()),
            input,
        );
        request.idempotency_key = key.map(str::to_owned);
        request.while_active = true;
        let slot = self.executor.try_slot();
        let mut span = self
            .executor
            .tracer()
            .start("submit", SpanContext::of_request(&request.id));
        span.set("baton.request.id", request.id.as_str());
        span.set("baton.flow", flow);
        span.set("baton.server", self.cluster.id.as_str());
        let created = self.store.create_request(&request, slot.is_some()).await;
        match &created {
            Ok(claim) => span.set("baton.claimed", claim.is_some()),
            Err(e) => span.fail(e.to_string()),
        }
        span.end();
        let claim = match created {
            Ok(claim) => claim,
            Err(StoreError::KeyTaken {
                request,
                same_input: true,
                ..
            }) => {
                return Ok(Submitted {
                    id: request,
                    created: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        match (claim, slot) {
            (Some(claim), Some(slot)) => self.executor.start(claim, slot),
            _ => self.executor.wake(),
        }
        Ok(Submitted {
            id: request.id,
            created: true,
        })
    }

    /// Sends the event `name` (JSON `payload`) to request `id` on behalf
    /// of `actor`: kept in its inbox for the flow's waits, and the request
    /// woken if it waits.
    pub async fn send_event(
        &self,
        id: &str,
        name: &str,
        payload: &[u8],
        key: Option<&str>,
        actor: &str,
    ) -> Result<bool, SendError> {
        if name.is_empty()
            || name.chars().count() > MAX_EVENT_NAME
            || name.chars().any(char::is_control)
        {
            return Err(SendError::InvalidName);
        }
        if key.is_some_and(|key| !valid_key(key)) {
            return Err(SendError::InvalidKey);
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Err(SendError::TooLarge);
        }
        let json: serde_json::Value =
            serde_json::from_slice(payload).map_err(SendError::InvalidPayload)?;
        let sent = self
            .store
            .send_event(id, name, &json.to_string(), key, actor)
            .await?;
        // The request may be this server's and due now.
        self.executor.wake();
        Ok(sent)
    }

    /// Cancels request `id` on behalf of `account`: its epoch moves on, so
    /// an attempt still running anywhere is fenced. One running here stops
    /// at once and gives its slot back; one on another server stops when
    /// that server's next heartbeat sees the epoch.
    pub async fn cancel(&self, id: &str, account: &str) -> Result<(), StoreError> {
        self.store.cancel(id, &self.cluster.id, account).await?;
        self.executor.interrupt(id, &Abort::Lost);
        Ok(())
    }

    /// Holds request `id` on behalf of `account`: no server runs it until
    /// it is resumed. Its attempt, if one runs here, stops before its next
    /// step; one on another server, once that server's next heartbeat sees
    /// the hold. `false` when it was held already.
    pub async fn hold(&self, id: &str, account: &str) -> Result<bool, StoreError> {
        let held = self.store.hold(id, &self.cluster.id, account).await?;
        self.executor.interrupt(id, &Abort::Held);
        Ok(held)
    }

    /// Resumes held request `id` on behalf of `account`: it runs again when
    /// due. `false` when it was not held.
    pub async fn resume(&self, id: &str, account: &str) -> Result<bool, StoreError> {
        let resumed = self.store.resume(id, &self.cluster.id, account).await?;
        self.executor.lift_hold(id);
        self.executor.wake();
        Ok(resumed)
    }

    /// Re-executes request `id` on behalf of `account`: this server owns
    /// it and its next attempt is due now. With `from = Some(k)`, it runs
    /// in a new journal generation that keeps checkpoints `0..k` and runs
    /// from `k` live.
    pub async fn reexecute(
        &self,
        id: &str,
        account: &str,
        from: Option<i64>,
    ) -> Result<(), StoreError> {
        let lease_ms = self.cluster.timing().lease.as_millis() as i64;
        self.store
            .reexecute(id, &self.cluster.id, lease_ms, from, account)
            .await?;
        self.executor.wake();
        Ok(())
    }

    /// Forks request `id` into a new request on behalf of `account`: the
    /// same version and input, a journal that starts with checkpoints
    /// `0..from` of `id`'s current generation, owned here and due now.
    /// `id` stays as it was. Answers the new request's ID.
    pub async fn fork(&self, id: &str, account: &str, from: i64) -> Result<String, StoreError> {
        let source = self
            .store
            .request(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
        let version = self
            .store
            .version(&source.version)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("version {}", source.version)))?;
        let new = NewRequest::of_version(
            &version,
            self.store.new_request_id(),
            (&self.cluster.id, self.cluster.incarnation()),
            source.input,
        );
        self.store.fork(&new, id, from, account).await?;
        self.executor.wake();
        Ok(new.id)
    }

    /// The IDs of requests whose attempt ends on this server, as they end.
    pub fn finished(&self) -> broadcast::Receiver<String> {
        self.executor.finished()
    }
}

/// How many children a request's detail shows.
pub const CHILDREN_SHOWN: i64 = 100;

/// The first [`CHILDREN_SHOWN`] requests `id`'s flow started, newest
/// first, for its detail (API and console).
pub async fn children(store: &dyn Store, id: &str) -> Result<Vec<RequestRow>, StoreError> {
    store
        .list_requests(&RequestFilter {
            parent: Some(id.to_owned()),
            limit: CHILDREN_SHOWN,
            ..Default::default()
        })
        .await
}

/// Which page of a request's checkpoints and events to show.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DetailQuery {
    /// Checkpoints after this position (`checkpoints_next` of the page before).
    pub checkpoints_after: Option<i64>,
    /// Events after this one (`events_next` of the page before).
    pub events_after: Option<i64>,
    /// Rows of each per page (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One page of a request's checkpoints and events, and where the next
/// pages start (`None` when there is no more): a request can hold 2²⁴
/// checkpoints, far too many to load at once.
pub struct DetailPage {
    /// Checkpoints, in order.
    pub checkpoints: Vec<baton_core::store::CheckpointRecord>,
    /// Events, oldest first.
    pub events: Vec<baton_core::store::EventRow>,
    /// `checkpoints_after` for the next page.
    pub checkpoints_next: Option<i64>,
    /// `events_after` for the next page.
    pub events_next: Option<i64>,
}

impl DetailQuery {
    /// Reads the page this query asks for.
    pub async fn page(&self, store: &dyn Store, id: &str) -> Result<DetailPage, StoreError> {
        let limit = self.limit.unwrap_or(100).clamp(1, 1000);
        let mut checkpoints = store
            .checkpoints(id, self.checkpoints_after, limit + 1)
            .await?;
        let mut events = store.events(id, self.events_after, limit + 1).await?;
        let more_checkpoints = checkpoints.len() as i64 > limit;
        let more_events = events.len() as i64 > limit;
        checkpoints.truncate(limit as usize);
        events.truncate(limit as usize);
        Ok(DetailPage {
            checkpoints_next: more_checkpoints
                .then(|| checkpoints.last().map(|c| c.journal_key))
                .flatten(),
            events_next: more_events.then(|| events.last().map(|e| e.id)).flatten(),
            checkpoints,
            events,
        })
    }
}

/// "; did you mean …?" naming `names`, or nothing.
fn suggest(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("; did you mean {one:?}?"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|n| format!("{n:?}")).collect();
            format!("; did you mean {} or {last:?}?", rest.join(", "))
        }
    }
}

/// Up to three of `names` within a few edits of `asked`, closest first: a
/// typo, a missing dash, another case.
fn closest<'a>(asked: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let asked = asked.to_lowercase();
    let mut near: Vec<(usize, &str)> = names
        .filter_map(|name| {
            let distance = edit_distance(&asked, &name.to_lowercase());
            (distance <= 2.max(asked.chars().count() / 3)).then_some((distance, name))
        })
        .collect();
    near.sort();
    near.into_iter()
        .take(3)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_flow_suggests_the_closest_names() {
        let deployed = ["hello", "order", "batch-import", "help-desk"];
        assert_eq!(closest("helo", deployed.into_iter()), ["hello"]);
        assert_eq!(closest("helpdesk", deployed.into_iter()), ["help-desk"]);
        assert_eq!(
            closest("batch_import", deployed.into_iter()),
            ["batch-import"]
        );
        assert_eq!(closest("ORDER", deployed.into_iter()), ["order"]);
        assert!(closest("invoice-sync", deployed.into_iter()).is_empty());
        assert_eq!(
            SubmitError::UnknownFlow {
                name: "helo".into(),
                closest: vec!["hello".into(), "help-desk".into()],
            }
            .to_string(),
            "there is no flow named \"helo\"; did you mean \"hello\" or \"help-desk\"?"
        );
    }
}
