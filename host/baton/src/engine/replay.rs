//! A request's journal replayed against a flow component, with no database
//! and no network: what `baton replay` runs on the bundle a server gives.
//! The flow takes the journal's path or says where it leaves it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use baton_runtime::{
    AttemptError, CheckpointStart, Egress, FlowComponent, HostAbort, Journal, LogLevel, Runtime,
    RuntimeConfig,
};

use crate::engine::checkpoint::{
    ChildOutcome, EVENT, NOW, RANDOM, SLEEP, START, TIMEOUT, WAIT, step_key,
};
use baton_core::store::{CHILD_WAIT_PREFIX, RequestFilter, RequestRow, Store, StoreError};

/// One record of the journal replayed.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The checkpoint's name.
    pub name: String,
    /// Its committed value (JSON).
    pub value: Vec<u8>,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The flow took the whole journal's path and returned.
    Finished {
        /// Its output, or its error's message.
        result: Result<Vec<u8>, String>,
    },
    /// The flow took the whole journal's path and asks for more: the
    /// request had got that far.
    ReachedEnd {
        /// Records replayed.
        replayed: u32,
        /// What the flow asks for next.
        next: String,
    },
    /// At `position` the journal records `recorded`; the flow asks for
    /// something else.
    Diverged {
        /// The position.
        position: u32,
        /// The journal's record there.
        recorded: String,
        /// What the flow does there instead.
        asked: Asked,
    },
    /// The flow trapped, or the component cannot run.
    Failed(String),
}

/// What a flow does where it leaves a journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// It asks for another checkpoint (or journaled value) there.
    Checkpoint(String),
    /// It returns, with records left.
    Finish,
    /// It fails, with records left.
    Fail(String),
}

impl std::fmt::Display for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Asked::Checkpoint(name) => write!(f, "{name:?}"),
            Asked::Finish => write!(f, "to finish"),
            Asked::Fail(why) => write!(f, "to end in error ({why})"),
        }
    }
}

/// Where the replay stopped the flow.
enum Stop {
    End {
        position: u32,
        next: String,
    },
    Diverged {
        position: u32,
        recorded: String,
        asked: String,
    },
    Invalid(String),
}

/// The [`Journal`] of a replay: every answer from the records.
pub struct ReplayJournal {
    request: String,
    generation: i64,
    records: Vec<Recorded>,
    next: u32,
    stop: Option<Stop>,
}

impl ReplayJournal {
    fn halt(&mut self, stop: Stop) -> HostAbort {
        let message = match &stop {
            Stop::End { .. } => "the replay reached the end of the journal".to_owned(),
            Stop::Diverged { .. } => "the replay left the journal's path".to_owned(),
            Stop::Invalid(why) => why.clone(),
        };
        self.stop.get_or_insert(stop);
        HostAbort(message)
    }

    /// The recorded value of `name` at the next position.
    fn recorded(&mut self, name: &str) -> Result<Vec<u8>, HostAbort> {
        let position = self.next;
        match self.records.get(position as usize) {
            None => Err(self.halt(Stop::End {
                position,
                next: name.to_owned(),
            })),
            Some(record) if record.name != name => {
                let recorded = record.name.clone();
                Err(self.halt(Stop::Diverged {
                    position,
                    recorded,
                    asked: name.to_owned(),
                }))
            }
            Some(record) => {
                let value = record.value.clone();
                self.next += 1;
                Ok(value)
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        value: &[u8],
    ) -> Result<T, HostAbort> {
        serde_json::from_slice(value).map_err(|e| {
            let position = self.next.saturating_sub(1);
            self.halt(Stop::Invalid(format!(
                "the journal's {name} at position {position} does not decode: {e}"
            )))
        })
    }
}

impl Journal for ReplayJournal {
    async fn guard(&mut self) -> Result<(), HostAbort> {
        Ok(())
    }

    async fn interrupted(&mut self) -> HostAbort {
        std::future::pending().await
    }

    async fn begin_checkpoint(&mut self, name: String) -> Result<CheckpointStart, HostAbort> {
        let position = self.next;
        let recorded = self.recorded(&name)?;
        Ok(CheckpointStart {
            position,
            key: step_key(&self.request, self.generation, position),
            recorded: Some(recorded),
        })
    }

    async fn commit_checkpoint(&mut self, position: u32, _: Vec<u8>) -> Result<(), HostAbort> {
        Err(self.halt(Stop::Invalid(format!(
            "the flow committed position {position}, which a replay never opens"
        ))))
    }

    async fn now_ms(&mut self) -> Result<u64, HostAbort> {
        let value = self.recorded(NOW)?;
        self.decode(NOW, &value)
    }

    async fn random_u64(&mut self) -> Result<u64, HostAbort> {
        let value = self.recorded(RANDOM)?;
        self.decode(RANDOM, &value)
    }

    async fn sleep_ms(&mut self, _: u64) -> Result<(), HostAbort> {
        self.recorded(SLEEP).map(drop)
    }

    async fn wait_event(&mut self, name: String, _: u64) -> Result<Option<Vec<u8>>, HostAbort> {
        self.recorded(&format!("{WAIT}{name}"))?;
        let (took, timed_out) = (format!("{EVENT}{name}"), format!("{TIMEOUT}{name}"));
        let timed_out_here = self
            .records
            .get(self.next as usize)
            .is_some_and(|r| r.name == timed_out);
        if timed_out_here {
            self.recorded(&timed_out)?;
            return Ok(None);
        }
        self.recorded(&took).map(Some)
    }

    async fn set_status(&mut self, _: String, _: Vec<u8>) -> Result<(), HostAbort> {
        Ok(())
    }

    async fn start_flow(
        &mut self,
        flow: String,
        _: Vec<u8>,
    ) -> Result<Result<String, String>, HostAbort> {
        let name = format!("{START}{flow}");
        let value = self.recorded(&name)?;
        self.decode(&name, &value).map(Ok)
    }

    async fn wait_child(&mut self, id: String) -> Result<Result<Vec<u8>, String>, HostAbort> {
        let name = format!("{CHILD_WAIT_PREFIX}{id}");
        let value = self.recorded(&name)?;
        Ok(match self.decode(&name, &value)? {
            ChildOutcome::Output(output) => {
                Ok(serde_json::to_vec(&output).expect("JSON serializes"))
            }
            ChildOutcome::Error(why) => Err(why),
        })
    }

    fn log(&mut self, _: LogLevel, _: &str) {}

    fn traceparent(&mut self) -> Option<String> {
        None
    }

    fn http_done(&mut self, _: std::time::Duration) {}
}

/// A component ready to replay journals: a runtime of its own that may
/// call nothing, compiled once for many replays.
pub struct Replayer {
    runtime: Runtime<ReplayJournal>,
    flow: Arc<FlowComponent<ReplayJournal>>,
    cache_dir: PathBuf,
}

impl Replayer {
    /// Compiles `component` for replays.
    pub async fn new(component: Vec<u8>) -> Result<Self, String> {
        // Compiled code is kept nowhere: a folder of this replayer's own.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let cache_dir = std::env::temp_dir().join(format!(
            "baton-replay-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let runtime = Runtime::<ReplayJournal>::new(RuntimeConfig {
            cache_dir: cache_dir.clone(),
            max_instances: 1,
            ..RuntimeConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let hash = blake3::hash(&component).to_hex().to_string();
        let flow = runtime
            .load(&hash, || Ok(component))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            runtime,
            flow,
            cache_dir,
        })
    }

    /// Replays `records` (one journal generation of request `request`) on
    /// `input`.
    pub async fn replay(
        &self,
        input: &[u8],
        request: &str,
        generation: i64,
        records: Vec<Recorded>,
    ) -> Verdict {
        let journal = ReplayJournal {
            request: request.to_owned(),
            generation,
            records,
            next: 0,
            stop: None,
        };
        let attempt = self
            .runtime
            .run(&self.flow, journal, input, Egress::default())
            .await;
        let journal = attempt.journal;
        match (journal.stop, attempt.result) {
            (Some(Stop::End { position, next }), _) => Verdict::ReachedEnd {
                replayed: position,
                next,
            },
            (
                Some(Stop::Diverged {
                    position,
                    recorded,
                    asked,
                }),
                _,
            ) => Verdict::Diverged {
                position,
                recorded,
                asked: Asked::Checkpoint(asked),
            },
            (Some(Stop::Invalid(why)), _) => Verdict::Failed(why),
            (None, result) if (journal.next as usize) < journal.records.len() => {
                let position = journal.next;
                let recorded = journal.records[position as usize].name.clone();
                let asked = match result {
                    Ok(_) => Asked::Finish,
                    Err(e) => Asked::Fail(e.to_string()),
                };
                Verdict::Diverged {
                    position,
                    recorded,
                    asked,
                }
            }
            (None, Ok(output)) => Verdict::Finished { result: Ok(output) },
            (None, Err(AttemptError::Flow(failure))) => Verdict::Finished {
                result: Err(failure.message),
            },
            (None, Err(e)) => Verdict::Failed(e.to_string()),
        }
    }
}

impl Drop for Replayer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cache_dir);
    }
}

/// Replays `records` (one journal generation of request `request`)
/// against `component` on `input`.
pub async fn replay(
    component: Vec<u8>,
    input: &[u8],
    request: &str,
    generation: i64,
    records: Vec<Recorded>,
) -> Verdict {
    match Replayer::new(component).await {
        Ok(replayer) => replayer.replay(input, request, generation, records).await,
        Err(why) => Verdict::Failed(why),
    }
}

/// The records of `request`'s current journal generation, with their values.
pub async fn recorded(
    store: &dyn Store,
    request: &RequestRow,
) -> Result<Vec<Recorded>, StoreError> {
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = store.checkpoints(&request.id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.journal_key);
        for record in page {
            if record.generation == request.generation {
                records.push(Recorded {
                    name: record.name,
                    value: store.read_payload(record.payload).await?,
                });
            }
        }
    }
    Ok(records)
}

/// How many of a flow's requests the deploy gate looks at, at most,
/// newest first.
pub const GATE_SCAN_MAX: usize = 10_000;

/// The deploy gate: replays the journals of every unfinished request of
/// `flow` (up to [`GATE_SCAN_MAX`] looked at) and of its `last` finished
/// ones against `component`, and says, one sentence per request, where the
/// component leaves a journal's path or fails on it. A request the new
/// build takes further than its journal (it had not finished, or the build
/// asks for more) does not diverge.
pub async fn gate(
    store: &dyn Store,
    flow: &str,
    component: Vec<u8>,
    last: usize,
) -> Result<Vec<String>, StoreError> {
    let replayer = match Replayer::new(component).await {
        Ok(replayer) => replayer,
        Err(why) => return Ok(vec![format!("the component cannot replay: {why}")]),
    };
    let mut divergences = Vec::new();
    let (mut finished, mut scanned) = (0, 0);
    let mut filter = RequestFilter {
        flow: Some(flow.to_owned()),
        limit: 500,
        ..Default::default()
    };
    loop {
        let page = store.list_requests(&filter).await?;
        let Some(last_row) = page.last() else { break };
        filter.after = Some(last_row.id.clone());
        for request in page {
            scanned += 1;
            if request.status.is_final() {
                if finished >= last {
                    continue;
                }
                finished += 1;
            }
            let records = recorded(store, &request).await?;
            let input = store.read_payload(request.input.clone()).await?;
            let verdict = replayer
                .replay(&input, &request.id, request.generation, records)
                .await;
            match verdict {
                Verdict::Diverged {
                    position,
                    recorded,
                    asked,
                } => divergences.push(format!(
                    "request {} at checkpoint {position}: the journal records {recorded:?}, \
                     the new version asks for {asked}",
                    request.id
                )),
                Verdict::Failed(why) => divergences.push(format!(
                    "request {}: the new version fails: {why}",
                    request.id
                )),
                Verdict::Finished { .. } | Verdict::ReachedEnd { .. } => {}
            }
            if scanned >= GATE_SCAN_MAX {
                return Ok(divergences);
            }
        }
    }
    Ok(divergences)
}
