//! Tests a flow in-process, natively, with no server: `cargo test` in the
//! flow's crate (feature `testing`, in `[dev-dependencies]`).
//!
//! A [`Harness`] runs the flow function on an in-memory journal that keeps
//! the server's rules (the same positions, idempotency keys and records for
//! the clock, randomness, sleeps and events), with outgoing HTTP answered by
//! stubs, events sent from the test and a clock that moves only when the
//! flow sleeps or waits, so a test of a day-long flow takes milliseconds.
//!
//! [`Harness::crash_at_every_checkpoint`] is the check that a flow survives
//! its server dying anywhere: it runs the flow once uncut, then once for
//! every journal position, cut there and resumed by replay, and asserts the
//! resumed run ends as the uncut one did.
//!
//! ```
//! use baton_guest::prelude::*;
//! use baton_guest::testing::{Harness, Response};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Charge { id: String }
//!
//! fn pay(ctx: &mut Ctx, cents: u64) -> Result<String, FlowError> {
//!     let charge: Charge = ctx.checkpoint("charge", |step| {
//!         step.http()
//!             .post("https://pay.example.com/charges")
//!             .idempotency_key(step.key())
//!             .json(&cents)
//!             .send()?
//!             .error_for_status()?
//!             .json()
//!     })?;
//!     ctx.sleep(Duration::from_secs(3600));
//!     Ok(charge.id)
//! }
//!
//! let harness = Harness::new().route(
//!     "POST",
//!     "https://pay.example.com/charges",
//!     Response::json(200, &serde_json::json!({ "id": "ch_1" })),
//! );
//! let run = harness.run(pay, &250);
//! assert_eq!(run.output, Ok("ch_1".to_owned()));
//! assert_eq!(run.calls[0].idempotency_key(), Some("test-request-0"));
//! assert_eq!(run.elapsed, Duration::from_secs(3600));
//!
//! // Cut at every position and resumed: the same output, the same effects.
//! harness.crash_at_every_checkpoint(pay, &250);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Ctx, FlowError};

/// Runs flow functions on an in-memory journal; built with the methods
/// below, then [`run`](Self::run) or
/// [`crash_at_every_checkpoint`](Self::crash_at_every_checkpoint) as many
/// times as the test likes.
pub struct Harness {
    request: String,
    start_ms: u64,
    seed: u64,
    routes: Vec<(String, String, Response)>,
    stub: Option<Stub>,
    events: Vec<Event>,
    child_flows: HashMap<String, ChildFlow>,
    /// The child requests started, by id: the database's rows, which
    /// outlive an attempt cut before it waited for them.
    children: Rc<RefCell<HashMap<String, (String, serde_json::Value)>>>,
}

type Stub = Rc<dyn Fn(&Call) -> Result<Response, String>>;
type ChildFlow = Rc<dyn Fn(&serde_json::Value) -> Result<serde_json::Value, String>>;

/// An event sent to the request by the test.
#[derive(Clone)]
struct Event {
    name: String,
    payload: Vec<u8>,
    /// Virtual milliseconds since the start at which it is sent.
    at_ms: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A harness for the request `test-request`, starting at
    /// 2026-01-01T00:00:00Z, with no HTTP stubs and no events.
    pub fn new() -> Self {
        Harness {
            request: "test-request".to_owned(),
            start_ms: 1_767_225_600_000,
            seed: 0,
            routes: Vec::new(),
            stub: None,
            events: Vec::new(),
            child_flows: HashMap::new(),
            children: Rc::default(),
        }
    }

    /// The request's id, which the steps' idempotency keys start with
    /// (`ID-0`, `ID-1`, ...).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request = id.into();
        self
    }

    /// The virtual clock's start ([`Ctx::now`] before any sleep).
    pub fn start_at(mut self, time: SystemTime) -> Self {
        self.start_ms = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The seed of [`Ctx::random`]: the same seed and journal position give
    /// the same value, so an uncut run and a resumed one draw alike.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Answers `method url` (exactly) with `response`, every time; a later
    /// route for the same call replaces an earlier one.
    pub fn route(
        mut self,
        method: impl Into<String>,
        url: impl Into<String>,
        response: Response,
    ) -> Self {
        self.routes.push((method.into(), url.into(), response));
        self
    }

    /// Answers the calls no [`route`](Self::route) matches: `Ok` with a
    /// response, or `Err` with why no answer came (connection refused...).
    /// A stub answers as the real service would, so a call repeated with
    /// the same idempotency key should get the same answer.
    pub fn http(mut self, stub: impl Fn(&Call) -> Result<Response, String> + 'static) -> Self {
        self.stub = Some(Rc::new(stub));
        self
    }

    /// Answers for the child flow `flow` ([`Ctx::start_flow`]): given the
    /// child's input, its output, or why it did not succeed (as
    /// [`ChildHandle::wait`](crate::ChildHandle::wait) reports a child in
    /// error). The closure may run the child's own flow function under a
    /// harness of its own. Starting a flow with no answer is an error, as
    /// starting an undeployed flow is.
    pub fn child(
        mut self,
        flow: impl Into<String>,
        outcome: impl Fn(&serde_json::Value) -> Result<serde_json::Value, String> + 'static,
    ) -> Self {
        self.child_flows.insert(flow.into(), Rc::new(outcome));
        self
    }

    /// Sends the event `name` before the flow starts.
    pub fn event(self, name: impl Into<String>, value: &impl Serialize) -> Self {
        self.event_after(Duration::ZERO, name, value)
    }

    /// Sends the event `name` `delay` after the flow starts, on the virtual
    /// clock: a wait whose timeout passes first gets `None`.
    pub fn event_after(
        mut self,
        delay: Duration,
        name: impl Into<String>,
        value: &impl Serialize,
    ) -> Self {
        let payload = serde_json::to_vec(value).expect("an event serializes to JSON");
        self.events.push(Event {
            name: name.into(),
            payload,
            at_ms: millis(delay),
        });
        self
    }

    /// Runs `flow` on `input` as one attempt of a new request.
    ///
    /// A panic in the flow is not caught: on a server it would trap and the
    /// attempt would be retried; here it fails the test where it happened.
    pub fn run<I, O, F>(&self, flow: F, input: &impl Serialize) -> Run<O>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&mut Ctx, I) -> Result<O, FlowError>,
    {
        let input = serde_json::to_vec(input).expect("the input serializes to JSON");
        match self.attempt(&flow, &input, Vec::new(), None) {
            Ended::Finished(output, attempt) => self.finish(output, attempt),
            Ended::Cut(_) => unreachable!("an attempt without a cut ran to its end"),
        }
    }

    /// Runs `flow` once uncut, then, for every position `k` of its journal,
    /// once cut at `k` and resumed by replay; panics, naming the cut, unless
    /// every resumed run ends as the uncut one: the same output, journal and
    /// status values, and the same effects. Returns the uncut run.
    ///
    /// The cut at `k` is the hardest place a server can die: the entry at
    /// `k` was done live (a step's HTTP calls were sent) but its commit was
    /// lost, so the resumed run does it again. It must send the same calls
    /// with the same `Idempotency-Key`: a call that changes something (any
    /// method but `GET`, `HEAD` and `OPTIONS`) and has no key, or a key that
    /// another step also uses, fails the check, since the service called
    /// could not tell the repeated call from a new one. A last cut loses the
    /// outcome after the last commit: the resumed run replays everything
    /// and must send nothing.
    pub fn crash_at_every_checkpoint<I, O, F>(&self, flow: F, input: &impl Serialize) -> Run<O>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&mut Ctx, I) -> Result<O, FlowError>,
    {
        let input = serde_json::to_vec(input).expect("the input serializes to JSON");
        let Ended::Finished(output, uncut) = self.attempt(&flow, &input, Vec::new(), None) else {
            unreachable!("an attempt without a cut ran to its end")
        };
        let uncut_output = output_json(&output);
        check_keys(&uncut.calls);
        let length = uncut.records.len() as u32;
        let mut cuts: Vec<Cut> = (0..length).map(Cut::LoseCommit).collect();
        if let Some(last) = length.checked_sub(1) {
            cuts.push(Cut::AfterCommit(last));
        }
        for cut in cuts {
            let cut_attempt = match self.attempt(&flow, &input, Vec::new(), Some(cut)) {
                Ended::Cut(attempt) => attempt,
                Ended::Finished(..) => panic!(
                    "{cut}: the second run of the flow ended before reaching position {}, \
                     which the first run reached: the flow is not deterministic",
                    cut.position()
                ),
            };
            let resumed = match self.attempt(&flow, &input, cut_attempt.records.clone(), None) {
                Ended::Finished(output, attempt) => (output, attempt),
                Ended::Cut(_) => unreachable!("an attempt without a cut ran to its end"),
            };
            compare(cut, &uncut, &uncut_output, &cut_attempt, &resumed);
        }
        self.finish(output, uncut)
    }

    fn attempt<I, O, F>(
        &self,
        flow: &F,
        input: &[u8],
        records: Vec<Record>,
        cut: Option<Cut>,
    ) -> Ended<O>
    where
        I: DeserializeOwned,
        F: Fn(&mut Ctx, I) -> Result<O, FlowError>,
    {
        let attempt = Attempt {
            request: self.request.clone(),
            recorded: records.len(),
            records,
            next: 0,
            open: None,
            clock_ms: self.start_ms,
            start_ms: self.start_ms,
            seed: self.seed,
            events: self.events.clone(),
            events_taken: HashMap::new(),
            routes: self.routes.clone(),
            stub: self.stub.clone(),
            child_flows: self.child_flows.clone(),
            children: Rc::clone(&self.children),
            calls: Vec::new(),
            status: BTreeMap::new(),
            logs: Vec::new(),
            cut,
        };
        journal::ATTEMPT.with(|slot| {
            let mut slot = slot.borrow_mut();
            assert!(slot.is_none(), "a flow under test started another flow run");
            *slot = Some(attempt);
        });
        let result = panic::catch_unwind(AssertUnwindSafe(|| crate::call_flow(input, flow)));
        let attempt = journal::ATTEMPT
            .with(|slot| slot.borrow_mut().take())
            .expect("the attempt's journal is installed");
        match result {
            Ok(output) => Ended::Finished(output, attempt),
            Err(payload) if payload.is::<Crashed>() => Ended::Cut(attempt),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    fn finish<O>(&self, output: Result<O, FlowError>, attempt: Attempt) -> Run<O> {
        Run {
            output,
            checkpoints: attempt
                .records
                .iter()
                .map(|record| Checkpoint {
                    name: record.name.clone(),
                    value: serde_json::from_slice(&record.payload)
                        .expect("a committed value is JSON"),
                })
                .collect(),
            calls: attempt.calls,
            status: attempt.status,
            logs: attempt.logs,
            elapsed: Duration::from_millis(attempt.clock_ms - attempt.start_ms),
        }
    }
}

/// What one attempt of the flow did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Run<O> {
    /// What the flow function returned.
    pub output: Result<O, FlowError>,
    /// The journal, in order: the steps' committed values and Baton's own
    /// records (`baton:now`, `baton:sleep`, `baton:wait:NAME`, ...), as the
    /// request page shows them.
    pub checkpoints: Vec<Checkpoint>,
    /// The HTTP calls the steps sent, in order.
    pub calls: Vec<Call>,
    /// The values published with [`Ctx::set_status`], the last per key.
    pub status: BTreeMap<String, serde_json::Value>,
    /// The log lines, as `LEVEL message`.
    pub logs: Vec<String>,
    /// How far the virtual clock moved (sleeps and waits).
    pub elapsed: Duration,
}

/// One record of the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The checkpoint's name.
    pub name: String,
    /// Its committed value.
    pub value: serde_json::Value,
}

/// An HTTP call sent by a step.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Call {
    /// The name of the checkpoint whose step sent it.
    pub step: String,
    /// That checkpoint's position.
    pub position: u32,
    /// That step's idempotency key ([`Step::key`](crate::Step::key)).
    pub step_key: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL.
    pub url: String,
    /// The headers, as the flow set them.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Call {
    /// The first header called `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Idempotency-Key` header.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("Idempotency-Key")
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether the call may change something on the other side.
    fn changes_something(&self) -> bool {
        !["GET", "HEAD", "OPTIONS"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m))
    }

    fn describe(&self) -> String {
        format!(
            "{} {} from step {:?} (position {})",
            self.method, self.url, self.step, self.position
        )
    }
}

/// A stub's answer to a [`Call`].
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An answer with this status and body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An answer with this status and `value` as its JSON body.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        Response::new(
            status,
            serde_json::to_vec(value).expect("the stub's answer serializes to JSON"),
        )
        .header("Content-Type", "application/json")
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Where an attempt is cut.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The entry at this position was done live; its commit is lost.
    LoseCommit(u32),
    /// The entry at this position is committed; then the server dies.
    AfterCommit(u32),
}

impl Cut {
    fn position(self) -> u32 {
        match self {
            Cut::LoseCommit(p) | Cut::AfterCommit(p) => p,
        }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::LoseCommit(p) => write!(f, "cut before the commit at position {p}"),
            Cut::AfterCommit(p) => write!(f, "cut after the last commit (position {p})"),
        }
    }
}

/// The unwinding payload of a cut: the server "died" there.
struct Crashed;

enum Ended<O> {
    Finished(Result<O, FlowError>, Attempt),
    Cut(Attempt),
}

#[derive(Debug, Clone, PartialEq)]
struct Record {
    name: String,
    payload: Vec<u8>,
}

/// One attempt's view of the request: its journal and what it did.
struct Attempt {
    request: String,
    records: Vec<Record>,
    /// How many records were there when the attempt began: below that it
    /// replays (and neither logs nor publishes).
    recorded: usize,
    next: u32,
    /// The live checkpoint begun and not yet committed.
    open: Option<(u32, String)>,
    clock_ms: u64,
    start_ms: u64,
    seed: u64,
    events: Vec<Event>,
    events_taken: HashMap<String, usize>,
    routes: Vec<(String, String, Response)>,
    stub: Option<Stub>,
    child_flows: HashMap<String, ChildFlow>,
    children: Rc<RefCell<HashMap<String, (String, serde_json::Value)>>>,
    calls: Vec<Call>,
    status: BTreeMap<String, serde_json::Value>,
    logs: Vec<String>,
    cut: Option<Cut>,
}

fn output_json<O: Serialize>(
    output: &Result<O, FlowError>,
) -> Result<serde_json::Value, FlowError> {
    match output {
        Ok(value) => Ok(serde_json::to_value(value).expect("the output serializes to JSON")),
        Err(e) => Err(e.clone()),
    }
}

/// A key a changing call carries must be its step's alone.
fn check_keys(calls: &[Call]) {
    let mut owner: HashMap<&str, &Call> = HashMap::new();
    for call in calls.iter().filter(|c| c.changes_something()) {
        let Some(key) = call.idempotency_key() else {
            continue;
        };
        if let Some(first) = owner.get(key)
            && first.position != call.position
        {
            panic!(
                "{} and {} carry the same Idempotency-Key {key:?}: the service would take \
                 the second for a repeat of the first (use each step's own Step::key)",
                first.describe(),
                call.describe()
            );
        }
        owner.entry(key).or_insert(call);
    }
}

fn compare<O: Serialize>(
    cut: Cut,
    uncut: &Attempt,
    uncut_output: &Result<serde_json::Value, FlowError>,
    cut_attempt: &Attempt,
    (output, resumed): &(Result<O, FlowError>, Attempt),
) {
    for (p, (a, b)) in uncut.records.iter().zip(&resumed.records).enumerate() {
        assert!(
            a == b,
            "{cut}: the resumed run recorded {:?} = {} at position {p}, the uncut run {:?} = {}: \
             the flow is not deterministic",
            b.name,
            String::from_utf8_lossy(&b.payload),
            a.name,
            String::from_utf8_lossy(&a.payload)
        );
    }
    assert_eq!(
        uncut.records.len(),
        resumed.records.len(),
        "{cut}: the resumed run recorded {} journal entries, the uncut run {}",
        resumed.records.len(),
        uncut.records.len()
    );
    let output = output_json(output);
    assert!(
        &output == uncut_output,
        "{cut}: the resumed run returned {output:?}, the uncut run {uncut_output:?}"
    );
    let mut status = cut_attempt.status.clone();
    status.extend(resumed.status.clone());
    assert_eq!(
        status, uncut.status,
        "{cut}: the status values after the resumed run differ from the uncut run's"
    );
    // Every step sent what it sent uncut, in the run that did it live.
    let at = |calls: &[Call], p: u32| -> Vec<Call> {
        calls.iter().filter(|c| c.position == p).cloned().collect()
    };
    for p in 0..uncut.records.len() as u32 {
        let expected = at(&uncut.calls, p);
        let (before, after) = (at(&cut_attempt.calls, p), at(&resumed.calls, p));
        let done_before_cut = match cut {
            Cut::LoseCommit(k) => p < k,
            Cut::AfterCommit(k) => p <= k,
        };
        let sent: Vec<Call> = match cut {
            Cut::LoseCommit(k) if p == k => {
                assert!(
                    before == expected,
                    "{cut}: the step at position {p} sent {before:#?} before the cut, \
                     {expected:#?} uncut"
                );
                for call in before.iter().filter(|c| c.changes_something()) {
                    assert!(
                        call.idempotency_key().is_some(),
                        "{cut}: {} ran again after the cut without an Idempotency-Key: \
                         the service cannot tell the repeat from a new call \
                         (add .idempotency_key(step.key()))",
                        call.describe()
                    );
                }
                after
            }
            _ if done_before_cut => before.into_iter().chain(after).collect(),
            _ => {
                assert!(
                    before.is_empty(),
                    "{cut}: position {p} sent calls before the cut"
                );
                after
            }
        };
        assert!(
            sent == expected,
            "{cut}: the step at position {p} sent {sent:#?} across the cut, {expected:#?} uncut"
        );
    }
}

/// The harness's side of the host calls (`crate::host` natively).
pub(crate) mod journal {
    use std::cell::RefCell;
    use std::panic;
    use std::rc::Rc;

    use super::{Attempt, Call, Crashed, Cut, Record};
    use crate::host::{CheckpointStart, Level, Request, Response};

    thread_local! {
        pub(super) static ATTEMPT: RefCell<Option<Attempt>> = const { RefCell::new(None) };
    }

    // The server's names for its own records, so that positions and keys
    // are the ones a server gives.
    const NOW: &str = "baton:now";
    const RANDOM: &str = "baton:random";
    const SLEEP: &str = "baton:sleep";
    const WAIT: &str = "baton:wait:";
    const EVENT: &str = "baton:event:";
    const TIMEOUT: &str = "baton:timeout:";
    const START: &str = "baton:start:";
    const CHILD: &str = "baton:child:";
    const RESERVED: &str = "baton:";
    const PAUSE_MAX_MS: u64 = 10_000;
    const STATUS_KEY_MAX: usize = 100;
    const STATUS_VALUE_MAX: usize = 64 * 1024;

    fn with<T>(f: impl FnOnce(&mut Attempt) -> T) -> T {
        ATTEMPT.with(|slot| {
            let mut slot = slot.borrow_mut();
            let attempt = slot.as_mut().expect(
                "a flow's Ctx is used outside baton_guest::testing::Harness::run \
                 (natively, flows run only under the harness)",
            );
            f(attempt)
        })
    }

    impl Attempt {
        fn live(&self) -> bool {
            self.next as usize >= self.recorded
        }

        /// Opens the entry `name` at the next position: its recorded
        /// payload, or `None` when it is to be done live.
        fn begin(&mut self, name: &str) -> (u32, Option<Vec<u8>>) {
            // As on a server, a live entry takes its position only when it
            // is committed: a step that failed leaves it to the next one.
            let position = self.next;
            match self.records.get(position as usize) {
                Some(record) if record.name == name => {
                    self.next += 1;
                    (position, Some(record.payload.clone()))
                }
                Some(record) => panic!(
                    "nondeterminism: the flow reached checkpoint {name:?} at position \
                     {position}, where the journal records {:?}",
                    record.name
                ),
                None => {
                    self.open = Some((position, name.to_owned()));
                    (position, None)
                }
            }
        }

        /// Commits the open entry at `position`; `true` when the attempt is
        /// cut there.
        fn commit(&mut self, position: u32, payload: Vec<u8>) -> bool {
            let (open, name) = self
                .open
                .take()
                .filter(|(open, _)| *open == position)
                .unwrap_or_else(|| panic!("commit at position {position}, which is not open"));
            match self.cut {
                Some(Cut::LoseCommit(p)) if p == open => return true,
                _ => self.records.push(Record { name, payload }),
            }
            self.next = open + 1;
            matches!(self.cut, Some(Cut::AfterCommit(p)) if p == open)
        }

        /// A journaled value: the recorded one, or `live()` committed.
        fn value(&mut self, name: &str, live: impl FnOnce(&Self, u32) -> u64) -> (u64, bool) {
            match self.begin(name) {
                (_, Some(recorded)) => (decode(name, &recorded), false),
                (position, None) => {
                    let value = live(self, position);
                    let cut = self.commit(position, value.to_string().into_bytes());
                    (value, cut)
                }
            }
        }

        /// The `index`-th event called `name`, in the order they were sent.
        fn event(&self, name: &str, index: usize) -> Option<(u64, Vec<u8>)> {
            self.events
                .iter()
                .filter(|e| e.name == name)
                .nth(index)
                .map(|e| (self.start_ms.saturating_add(e.at_ms), e.payload.clone()))
        }
    }

    fn decode(name: &str, payload: &[u8]) -> u64 {
        serde_json::from_slice(payload)
            .unwrap_or_else(|e| panic!("the journal's {name} record does not decode: {e}"))
    }

    /// Unwinds out of the flow, as if the server died here. `resume_unwind`
    /// skips the panic hook: a cut prints nothing.
    fn crash_if(cut: bool) {
        if cut {
            panic::resume_unwind(Box::new(Crashed));
        }
    }

    pub(crate) fn begin_checkpoint(name: &str) -> CheckpointStart {
        if name.starts_with(RESERVED) {
            panic!(
                "checkpoint name {name:?} starts with {RESERVED:?}, which is reserved for \
                 Baton's own records"
            );
        }
        with(|attempt| {
            let (position, recorded) = attempt.begin(name);
            CheckpointStart {
                position,
                key: format!("{}-{position}", attempt.request),
                recorded,
            }
        })
    }

    pub(crate) fn commit_checkpoint(position: u32, payload: &[u8]) {
        crash_if(with(|attempt| attempt.commit(position, payload.to_vec())));
    }

    pub(crate) fn now_ms() -> u64 {
        let (now, cut) = with(|attempt| attempt.value(NOW, |a, _| a.clock_ms));
        crash_if(cut);
        now
    }

    pub(crate) fn random_u64() -> u64 {
        let (value, cut) = with(|attempt| {
            attempt.value(RANDOM, |a, position| {
                splitmix64(a.seed ^ u64::from(position).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            })
        });
        crash_if(cut);
        value
    }

    pub(crate) fn sleep_ms(ms: u64) {
        let cut = with(|attempt| {
            let (wake_at, cut) = attempt.value(SLEEP, |a, _| a.clock_ms.saturating_add(ms));
            attempt.clock_ms = attempt.clock_ms.max(wake_at);
            cut
        });
        crash_if(cut);
    }

    pub(crate) fn wait_event(name: &str, timeout_ms: u64) -> Option<Vec<u8>> {
        let wait = format!("{WAIT}{name}");
        let (deadline, cut) =
            with(|attempt| attempt.value(&wait, |a, _| a.clock_ms.saturating_add(timeout_ms)));
        crash_if(cut);
        let (took, timed_out) = (format!("{EVENT}{name}"), format!("{TIMEOUT}{name}"));
        let (got, cut) = with(|attempt| {
            let index = attempt.events_taken.get(name).copied().unwrap_or(0);
            let recorded = attempt
                .records
                .get(attempt.next as usize)
                .map(|r| r.name.clone());
            let event = match recorded {
                Some(recorded) => (recorded != timed_out).then(|| attempt.event(name, index)),
                None => Some(attempt.event(name, index).filter(|(at, _)| *at <= deadline)),
            }
            .flatten();
            match event {
                Some((at, payload)) => {
                    let (position, recorded) = attempt.begin(&took);
                    attempt.clock_ms = attempt.clock_ms.max(at);
                    *attempt.events_taken.entry(name.to_owned()).or_default() += 1;
                    match recorded {
                        Some(recorded) => (Some(recorded), false),
                        None => {
                            let cut = attempt.commit(position, payload.clone());
                            (Some(payload), cut)
                        }
                    }
                }
                None => {
                    let (position, recorded) = attempt.begin(&timed_out);
                    attempt.clock_ms = attempt.clock_ms.max(deadline);
                    let cut = recorded.is_none() && attempt.commit(position, b"null".to_vec());
                    (None, cut)
                }
            }
        });
        crash_if(cut);
        got
    }

    pub(crate) fn start_flow(flow: &str, input: &[u8]) -> Result<String, String> {
        let name = format!("{START}{flow}");
        let (started, cut) = with(|attempt| match attempt.begin(&name) {
            (_, Some(recorded)) => {
                let id = serde_json::from_slice(&recorded).expect("a child's id is a JSON string");
                (Ok(id), false)
            }
            (position, None) => {
                if !attempt.child_flows.contains_key(flow) {
                    return (
                        Err(format!(
                            "there is no flow named {flow:?} (answer it with Harness::child)"
                        )),
                        false,
                    );
                }
                let Ok(input) = serde_json::from_slice(input) else {
                    return (
                        Err(format!("the input of the flow {flow:?} is not JSON")),
                        false,
                    );
                };
                let id = format!("{}-child-{position}", attempt.request);
                attempt
                    .children
                    .borrow_mut()
                    .insert(id.clone(), (flow.to_owned(), input));
                let payload = serde_json::to_vec(&id).expect("a string serializes");
                let cut = attempt.commit(position, payload);
                (Ok(id), cut)
            }
        });
        crash_if(cut);
        started
    }

    pub(crate) fn wait_child(id: &str) -> Result<Vec<u8>, String> {
        let name = format!("{CHILD}{id}");
        let live = with(|attempt| match attempt.begin(&name) {
            (_, Some(recorded)) => Err(recorded),
            (position, None) => {
                let child = attempt.children.borrow().get(id).cloned();
                let answer = child.map(|(flow, input)| {
                    let outcome = Rc::clone(&attempt.child_flows[&flow]);
                    (flow, input, outcome)
                });
                Ok((position, answer))
            }
        });
        let recorded = match live {
            Err(recorded) => recorded,
            Ok((_, None)) => return Err(format!("request {id} is not a child of this request")),
            Ok((position, Some((flow, input, outcome)))) => {
                // The child runs with the parent's journal put aside: its
                // answer may run a flow under a harness of its own.
                let parent = ATTEMPT.with(|slot| slot.borrow_mut().take());
                let outcome = outcome(&input);
                ATTEMPT.with(|slot| *slot.borrow_mut() = parent);
                let recorded = serde_json::to_vec(&match outcome {
                    Ok(output) => serde_json::json!({ "output": output }),
                    Err(why) => serde_json::json!({
                        "error": format!("the child request {id} ({flow}) ended in error: {why}")
                    }),
                })
                .expect("JSON serializes");
                crash_if(with(|attempt| attempt.commit(position, recorded.clone())));
                recorded
            }
        };
        let outcome: serde_json::Value =
            serde_json::from_slice(&recorded).expect("a child's outcome is JSON");
        match (&outcome["output"], outcome["error"].as_str()) {
            (_, Some(why)) => Err(why.to_owned()),
            (output, None) => Ok(serde_json::to_vec(output).expect("JSON serializes")),
        }
    }

    pub(crate) fn set_status(key: &str, value: &[u8]) {
        assert!(
            !key.is_empty() && key.chars().count() <= STATUS_KEY_MAX,
            "a status key is 1 to {STATUS_KEY_MAX} characters (the server traps)"
        );
        assert!(
            value.len() <= STATUS_VALUE_MAX,
            "a status value is at most {STATUS_VALUE_MAX} bytes (the server traps)"
        );
        with(|attempt| {
            if attempt.live() {
                let value = serde_json::from_slice(value).expect("a status value is JSON");
                attempt.status.insert(key.to_owned(), value);
            }
        });
    }

    pub(crate) fn pause_ms(ms: u64) {
        assert!(
            ms <= PAUSE_MAX_MS,
            "a pause of {ms} ms: at most {PAUSE_MAX_MS} ms (the server traps; use Ctx::sleep)"
        );
    }

    pub(crate) fn log(level: Level, message: &str) {
        with(|attempt| {
            if attempt.live() {
                let level = match level {
                    Level::Debug => "DEBUG",
                    Level::Info => "INFO",
                    Level::Warn => "WARN",
                    Level::Error => "ERROR",
                };
                attempt.logs.push(format!("{level} {message}"));
            }
        });
    }

    pub(crate) fn http_send(request: &Request) -> Result<Response, String> {
        let (call, routed, stub) = with(|attempt| {
            let (position, step) = attempt
                .open
                .clone()
                .expect("an HTTP call is sent only by a live step");
            let call = Call {
                step,
                position,
                step_key: format!("{}-{position}", attempt.request),
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
            };
            attempt.calls.push(call.clone());
            let routed = attempt
                .routes
                .iter()
                .rev()
                .find(|(m, u, _)| m.eq_ignore_ascii_case(&call.method) && *u == call.url)
                .map(|(_, _, r)| r.clone());
            (call, routed, attempt.stub.clone())
        });
        // The stub runs with the journal released: it may be any code.
        let answer = match (routed, stub) {
            (Some(response), _) => Ok(response),
            (None, Some(stub)) => stub(&call),
            (None, None) => Err(format!(
                "no stub answers {} {} (Harness::route or Harness::http)",
                call.method, call.url
            )),
        };
        answer.map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    fn splitmix64(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
