//! A request's journal replayed against a flow component, with no database
//! and no network: what `baton replay` runs on the bundle a server gives.
//! The flow takes the journal's path or says where it leaves it.

use std::path::PathBuf;

use baton_runtime::{
    AttemptError, CheckpointStart, Egress, HostAbort, Journal, LogLevel, Runtime, RuntimeConfig,
};

use crate::engine::checkpoint::{
    ChildOutcome, EVENT, NOW, RANDOM, SLEEP, START, TIMEOUT, WAIT, step_key,
};
use baton_core::store::CHILD_WAIT_PREFIX;

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
    /// `asked`.
    Diverged {
        /// The position.
        position: u32,
        /// The journal's record there.
        recorded: String,
        /// The flow's checkpoint there.
        asked: String,
    },
    /// The flow trapped, or the component cannot run.
    Failed(String),
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
}

/// Replays `records` (one journal generation of request `request`)
/// against `component` on `input`, in a runtime of its own that may call
/// nothing.
pub async fn replay(
    component: Vec<u8>,
    input: &[u8],
    request: &str,
    generation: i64,
    records: Vec<Recorded>,
) -> Verdict {
    // Compiled code is kept nowhere: a folder of this replay's own.
    let cache_dir: PathBuf =
        std::env::temp_dir().join(format!("baton-replay-{}", std::process::id()));
    let runtime = match Runtime::<ReplayJournal>::new(RuntimeConfig {
        cache_dir: cache_dir.clone(),
        max_instances: 1,
        ..RuntimeConfig::default()
    }) {
        Ok(runtime) => runtime,
        Err(e) => return Verdict::Failed(e.to_string()),
    };
    let hash = blake3::hash(&component).to_hex().to_string();
    let loaded = runtime.load(&hash, || Ok(component)).await;
    let verdict = match loaded {
        Err(e) => Verdict::Failed(e.to_string()),
        Ok(flow) => {
            let journal = ReplayJournal {
                request: request.to_owned(),
                generation,
                records,
                next: 0,
                stop: None,
            };
            let attempt = runtime.run(&flow, journal, input, Egress::default()).await;
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
                    asked,
                },
                (Some(Stop::Invalid(why)), _) => Verdict::Failed(why),
                (None, result) if (journal.next as usize) < journal.records.len() => {
                    let position = journal.next;
                    let recorded = journal.records[position as usize].name.clone();
                    let asked = match result {
                        Ok(_) => "to finish".to_owned(),
                        Err(e) => format!("to end in error ({e})"),
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
    };
    let _ = std::fs::remove_dir_all(&cache_dir);
    verdict
}
