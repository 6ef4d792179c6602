//! The flow's handle on the journal: checkpoints, time, randomness, logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FlowError;
use crate::host::{self as journal, Level};

/// The flow's handle on its request's journal, passed to the flow function.
///
/// Everything that would make two attempts of the same request differ goes
/// through it: steps with side effects ([`checkpoint`](Self::checkpoint)),
/// the clock ([`now`](Self::now), [`sleep`](Self::sleep)) and randomness
/// ([`random`](Self::random)). Their results are recorded the first time and
/// replayed on a retry, so a flow that only depends on its input and on `Ctx`
/// takes the same path every time.
///
/// The journaled methods take `&mut self`, and a step's closure receives a
/// [`Step`], not the `Ctx`: the compiler thus refuses a checkpoint, a clock
/// read or a sleep inside a step, which would not be replayed when the step
/// is.
#[derive(Debug)]
pub struct Ctx {
    /// Idempotency key of the most recent checkpoint.
    last_key: Option<String>,
}

impl Ctx {
    pub(crate) fn new() -> Self {
        Ctx { last_key: None }
    }

    /// Runs the step `name` once per request and returns its result.
    ///
    /// The first time the request reaches this checkpoint, `step` runs; its
    /// `Ok` value is serialized to JSON and committed durably before the
    /// flow goes on to anything the host sees: the next checkpoint, sleep,
    /// wait, clock read, status value or child start, or the flow's own
    /// end, whose outcome commits it (and within about a millisecond when
    /// the flow computes on without any of these). On a retry the committed value is
    /// returned and `step` does not run. An `Err` is returned as is and
    /// nothing is committed, so the next attempt runs the step again.
    ///
    /// The value returned live is the committed JSON decoded again, so a
    /// live attempt sees exactly what a replay will see (fields skipped by
    /// serde, float rounding).
    ///
    /// Checkpoints must come in the same order with the same names on every
    /// attempt; otherwise the host stops the request with a nondeterminism
    /// error.
    ///
    /// ```no_run
    /// # use baton_guest::prelude::*;
    /// # fn f(ctx: &mut Ctx) -> Result<(), FlowError> {
    /// let total: u64 = ctx.checkpoint("sum", |_step| Ok((1..=10).sum()))?;
    /// # Ok(()) }
    /// ```
    pub fn checkpoint<T, F>(&mut self, name: &str, step: F) -> Result<T, FlowError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&Step) -> Result<T, FlowError>,
    {
        let start = journal::begin_checkpoint(name);
        let position = start.position;
        self.last_key = Some(start.key.clone());
        let decode = |payload: &[u8]| {
            serde_json::from_slice(payload).map_err(|e| {
                FlowError::new(format!(
                    "checkpoint \"{name}\" at position {position}: \
                     the recorded value does not decode: {e}"
                ))
            })
        };
        if let Some(recorded) = start.recorded {
            return decode(&recorded);
        }
        let step_handle = Step {
            position,
            key: start.key,
        };
        let value = step(&step_handle)?;
        let payload = serde_json::to_vec(&value).map_err(|e| {
            FlowError::new(format!(
                "checkpoint \"{name}\" at position {position}: \
                 the value does not serialize: {e}"
            ))
        })?;
        // Decode before committing: a value that cannot be read back must
        // fail now, not on every later replay.
        let value = decode(&payload)?;
        journal::commit_checkpoint(position, &payload);
        Ok(value)
    }

    /// [`checkpoint`](Self::checkpoint), with the step retried inside this
    /// attempt as `retry` says when it fails: a passing failure (a service
    /// that did not answer) costs a pause, not the whole request's retry.
    /// A [`FlowError::fatal`] error is not retried; the last error is
    /// returned as `checkpoint` would. The pauses are live only, like
    /// [`Step::pause`]: a replay returns the committed value at once.
    ///
    /// ```no_run
    /// # use baton_guest::prelude::*;
    /// # fn f(ctx: &mut Ctx) -> Result<(), FlowError> {
    /// let retry = Retry::times(3).interval(Duration::from_millis(200)).backoff(2.0);
    /// let quote: u64 = ctx.checkpoint_with("quote", retry, |step| {
    ///     let answer = step.http().get("https://quotes.example.com/latest").send()?;
    ///     Ok(answer.json::<u64>()?)
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn checkpoint_with<T, F>(
        &mut self,
        name: &str,
        retry: Retry,
        mut step: F,
    ) -> Result<T, FlowError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&Step) -> Result<T, FlowError>,
    {
        self.checkpoint(name, |handle| {
            let mut delay = retry.interval;
            let mut retried = 0;
            loop {
                match step(handle) {
                    Err(e) if !e.is_fatal() && retried < retry.times => {
                        retried += 1;
                        handle.log(format!(
                            "step {name} failed ({e}); retry {retried} of {} in {} ms",
                            retry.times,
                            delay.as_millis()
                        ));
                        handle.pause(delay);
                        delay = retry.after(delay);
                    }
                    result => return result,
                }
            }
        })
    }

    /// The idempotency key of the most recent checkpoint, replayed or live
    /// (a replayed step's closure does not run, so it never sees its
    /// [`Step`]). `None` before the first checkpoint.
    pub fn last_key(&self) -> Option<&str> {
        self.last_key.as_deref()
    }

    /// Sleeps durably: the wake-up time is journaled, so a resumed request
    /// only waits for what is left of `duration`. A long sleep (over 5 s)
    /// frees the server's slot: the flow is resumed by replay when it is due,
    /// so code before the sleep outside a checkpoint runs again then.
    pub fn sleep(&mut self, duration: Duration) {
        journal::sleep_ms(millis(duration));
    }

    /// Waits durably for the event `name` sent to this request
    /// (`POST /api/requests/{id}/events/{name}`, `baton send`, or the
    /// request page) and returns its JSON decoded as `T`, or `None` when
    /// `timeout` passes first. Events sent before the wait are kept: the
    /// first wait for a name gets the first event of that name, the second
    /// the second, in the order they were sent. While nothing has come the
    /// request leaves its slot, like a long [`sleep`](Self::sleep), and is
    /// resumed by replay when an event comes or the timeout passes; the
    /// deadline and what the wait got are journaled, so a replay, on any
    /// server, gets the same.
    ///
    /// ```no_run
    /// # use baton_guest::prelude::*;
    /// # #[derive(Deserialize)] struct Approval { approved: bool }
    /// # fn f(ctx: &mut Ctx) -> Result<(), FlowError> {
    /// match ctx.wait_event::<Approval>("approval", Duration::from_secs(24 * 3600))? {
    ///     Some(approval) if approval.approved => { /* go on */ }
    ///     Some(_) => return Err(FlowError::fatal("refused by the approver")),
    ///     None => return Err(FlowError::fatal("no approval within a day")),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_event<T: DeserializeOwned>(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>, FlowError> {
        match journal::wait_event(name, millis(timeout)) {
            None => Ok(None),
            Some(payload) => serde_json::from_slice(&payload)
                .map(Some)
                .map_err(|e| FlowError::fatal(format!("the event {name:?} does not decode: {e}"))),
        }
    }

    /// Publishes `value` under `key` for whoever follows the request: the
    /// API shows it in the request's `status_values`, replaced by the next
    /// value under the same key. Only live code publishes: a replay does not
    /// write again what an earlier attempt wrote. A key is 1 to 100
    /// characters and a value at most 64 KiB of JSON.
    pub fn set_status(&mut self, key: &str, value: &impl Serialize) -> Result<(), FlowError> {
        let value = serde_json::to_vec(value)
            .map_err(|e| FlowError::new(format!("the status {key:?} does not serialize: {e}")))?;
        journal::set_status(key, &value);
        Ok(())
    }

    /// Starts a request of the flow `flow` on `input`, as a child of this
    /// request: an ordinary request (in the Status List, retried, taken
    /// over) that names this one as its parent, and is cancelled with it.
    /// The start is journaled, so a replay gets the same child, and the
    /// child is created once even when the server dies during the start.
    /// The flow declares the flows it starts as resources
    /// (`#[flow(resources = ["flow:approval"])]`); starting another is
    /// refused. An unknown flow is a retryable error: the flow may be
    /// deployed before the retry.
    ///
    /// ```no_run
    /// # use baton_guest::prelude::*;
    /// # #[derive(Deserialize)] struct Decision { approved: bool }
    /// # fn f(ctx: &mut Ctx) -> Result<(), FlowError> {
    /// let approval = ctx.start_flow("approval", &serde_json::json!({ "amount": 120 }))?;
    /// let decision: Decision = approval.wait(ctx)?;
    /// # Ok(()) }
    /// ```
    pub fn start_flow(
        &mut self,
        flow: &str,
        input: &impl Serialize,
    ) -> Result<ChildHandle, FlowError> {
        let input = serde_json::to_vec(input).map_err(|e| {
            FlowError::new(format!(
                "the input of the flow {flow:?} does not serialize: {e}"
            ))
        })?;
        let id = journal::start_flow(flow, &input).map_err(FlowError::new)?;
        Ok(ChildHandle {
            id,
            flow: flow.to_owned(),
        })
    }

    /// The current wall-clock time, journaled: a replay sees the same value.
    pub fn now(&mut self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(journal::now_ms())
    }

    /// A random value, journaled: a replay sees the same value.
    pub fn random(&mut self) -> u64 {
        journal::random_u64()
    }

    /// Writes an info line to the server log, tagged with the request id.
    /// Only live code logs: while an attempt replays what an earlier one
    /// ran (checkpoints recorded ahead), its lines were written then and
    /// are not written again.
    pub fn log(&self, message: impl AsRef<str>) {
        journal::log(Level::Info, message.as_ref());
    }

    /// Writes a debug line to the server log.
    pub fn debug(&self, message: impl AsRef<str>) {
        journal::log(Level::Debug, message.as_ref());
    }

    /// Writes a warning to the server log.
    pub fn warn(&self, message: impl AsRef<str>) {
        journal::log(Level::Warn, message.as_ref());
    }

    /// Writes an error line to the server log.
    pub fn error(&self, message: impl AsRef<str>) {
        journal::log(Level::Error, message.as_ref());
    }
}

/// A child request started by [`Ctx::start_flow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildHandle {
    id: String,
    flow: String,
}

impl ChildHandle {
    /// The child request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The child's flow.
    pub fn flow(&self) -> &str {
        &self.flow
    }

    /// Waits durably for the child to end and returns its output decoded
    /// as `T`. While the child runs this request leaves its slot, like a
    /// long sleep, and the child's end wakes it; the outcome is journaled,
    /// so a replay gets it at once. A child that ended in error or was
    /// cancelled is a [`FlowError::fatal`] naming it (its details say which
    /// child): its retries are spent, and a retry of this request would
    /// only replay the same outcome. Takes the [`Ctx`], so a step cannot
    /// wait.
    pub fn wait<T: DeserializeOwned>(&self, _ctx: &mut Ctx) -> Result<T, FlowError> {
        let details = || serde_json::json!({ "child": self.id, "flow": self.flow });
        match journal::wait_child(&self.id) {
            Ok(output) => serde_json::from_slice(&output).map_err(|e| {
                FlowError::fatal(format!(
                    "the output of the child request {} ({}) does not decode: {e}",
                    self.id, self.flow
                ))
                .with_details(details())
            }),
            Err(why) => Err(FlowError::fatal(why).with_details(details())),
        }
    }
}

/// The step being run live by [`Ctx::checkpoint`].
#[derive(Debug)]
pub struct Step {
    position: u32,
    key: String,
}

impl Step {
    /// The step's idempotency key (request id + position): the same on every
    /// attempt, different for every step. Pass it to external systems, e.g.
    /// with [`http::RequestBuilder::idempotency_key`](crate::http::RequestBuilder::idempotency_key).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The checkpoint's position in the request's journal (0-based).
    pub fn position(&self) -> u32 {
        self.position
    }

    /// The step's HTTP client. Outgoing requests are not journaled, so only
    /// a step sends them: a replayed attempt does not run the step, and so
    /// does not send them twice.
    pub fn http(&self) -> crate::http::Http<'_> {
        crate::http::Http::new()
    }

    /// Waits without journaling, for simulated work or polling inside the
    /// step: a replayed step does not run, so neither does the pause. At
    /// most 10 s: a longer pause traps (use [`Ctx::sleep`]).
    pub fn pause(&self, duration: Duration) {
        journal::pause_ms(millis(duration));
    }

    /// Writes an info line to the server log from inside the step.
    pub fn log(&self, message: impl AsRef<str>) {
        journal::log(Level::Info, message.as_ref());
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How [`Ctx::checkpoint_with`] retries a failing step inside the attempt.
///
/// ```
/// use std::time::Duration;
/// use baton_guest::Retry;
///
/// let retry = Retry::times(3).interval(Duration::from_millis(100)).backoff(2.0);
/// assert_eq!(retry.after(Duration::from_millis(100)), Duration::from_millis(200));
/// assert_eq!(retry.after(Duration::from_secs(8)), Retry::MAX_INTERVAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    times: u32,
    interval: Duration,
    backoff: f64,
}

impl Retry {
    /// The longest pause between two tries: a pause holds the attempt's
    /// slot, and the host refuses a longer one. Longer waits belong to the
    /// request's own retries (`retry_interval`) or to [`Ctx::sleep`].
    pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

    /// Up to `times` retries after the first try, 1 s apart by default.
    pub fn times(times: u32) -> Self {
        Retry {
            times,
            interval: Duration::from_secs(1),
            backoff: 1.0,
        }
    }

    /// The pause before the first retry (at most [`Retry::MAX_INTERVAL`]).
    pub fn interval(self, interval: Duration) -> Self {
        Retry {
            interval: interval.min(Self::MAX_INTERVAL),
            ..self
        }
    }

    /// Multiplies the pause after each retry (1.0, the default, keeps it).
    pub fn backoff(self, factor: f64) -> Self {
        Retry {
            backoff: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
            ..self
        }
    }

    /// The pause that follows a pause of `delay`.
    pub fn after(&self, delay: Duration) -> Duration {
        Duration::try_from_secs_f64(delay.as_secs_f64() * self.backoff)
            .unwrap_or(Self::MAX_INTERVAL)
            .min(Self::MAX_INTERVAL)
    }
}
