//! The engine, the compiled-component cache and attempt execution.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::host::{self, Http, SandboxLimits, State, bindings};
use baton_core::FlowProperties;

use crate::{Egress, HostAbort, Journal};

/// How often the engine's epoch advances: the granularity of time limits
/// and of a busy flow's yields to the async runtime.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sandbox and cache settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Folder for compiled components (`<hash>-<engine>.cwasm`).
    pub cache_dir: PathBuf,
    /// Linear memory one instance may grow to.
    pub memory_limit: usize,
    /// Guest execution time one attempt may use (host calls not counted).
    pub time_limit: Duration,
    /// Wall-clock time one attempt may last: a host call that waits (HTTP,
    /// pause, sleep) past it ends the attempt.
    pub wall_limit: Duration,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// The largest answer body a flow's HTTP call may receive.
    pub http_body_limit: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("baton-data/compiled"),
            memory_limit: 64 << 20,
            time_limit: Duration::from_secs(60),
            wall_limit: Duration::from_secs(300),
            max_instances: 128,
            http_body_limit: 16 << 20,
        }
    }
}

/// Why an attempt or a deploy-time inspection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// The bytes are not a usable flow component.
    #[error("invalid flow component: {0}")]
    Invalid(String),
    /// The flow trapped: a panic, a limit, or a host call refused it.
    #[error("{0}")]
    Trap(String),
    /// The flow returned an error.
    #[error("{}", .0.message)]
    Flow(FlowFailure),
}

/// An error a flow returned from `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFailure {
    /// What went wrong, in the flow's words.
    pub message: String,
    /// The flow says no retry can help.
    pub fatal: bool,
    /// JSON details, as the flow gave them.
    pub details: Option<Vec<u8>>,
}

/// A compiled, pre-linked flow version.
pub struct FlowComponent<J: Journal> {
    /// blake3 of the component bytes.
    pub hash: String,
    pre: bindings::FlowPre<State<J>>,
}

/// The result of one attempt, with the journal handed back so the caller
/// can read why a host call stopped it.
pub struct Attempt<J> {
    /// The journal the attempt ran with.
    pub journal: J,
    /// Output JSON, or the flow's own error ([`AttemptError::Flow`]), or a trap.
    pub result: Result<Vec<u8>, AttemptError>,
    /// Time to instantiate the component.
    pub instantiate: Duration,
}

/// Runs flow components. One per server.
pub struct Runtime<J: Journal> {
    engine: Engine,
    linker: Linker<State<J>>,
    config: RuntimeConfig,
    compat: String,
    loaded: Mutex<HashMap<String, Arc<FlowComponent<J>>>>,
    http: reqwest::Client,
    ticker_stop: Arc<AtomicBool>,
}

impl<J: Journal> Drop for Runtime<J> {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl<J: Journal> Runtime<J> {
    /// Builds the engine (pooling allocator, epoch interruption) and linker.
    pub fn new(config: RuntimeConfig) -> Result<Self, AttemptError> {
        let engine_error = |e: wasmtime::Error| AttemptError::Invalid(format!("engine: {e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        // A Rust component holds a few core instances, memories and tables
        // (the program, WASI adapter shims); size the pool for that.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 6)
            .total_memories(instances * 2)
            .total_tables(instances * 6)
            .total_stacks(instances)
            .max_memory_size(config.memory_limit);
        // Resetting a slot for its next instance is most of an attempt's
        // overhead: clear a table's few KiB in place rather than return its
        // pages to the kernel, and give the memories' pages back 16 slots at
        // a time, one TLB flush across the cores for all of them.
        pool.table_keep_resident(64 << 10).decommit_batch_size(16);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(engine_error)?;
        std::fs::create_dir_all(&config.cache_dir).map_err(|e| {
            AttemptError::Invalid(format!("cache folder {}: {e}", config.cache_dir.display()))
        })?;
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticker, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("baton-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| AttemptError::Invalid(format!("epoch thread: {e}")))?;
        Ok(Self {
            engine,
            linker,
            config,
            compat,
            loaded: Mutex::new(HashMap::new()),
            // A redirect would lead a call past the egress check.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| AttemptError::Invalid(format!("HTTP client: {e}")))?,
            ticker_stop,
        })
    }

    /// The loaded version `hash`, compiling it (or reading the compiled
    /// artifact from the cache folder) on first use. `bytes` is only called
    /// when nothing compiled is at hand.
    pub async fn load(
        &self,
        hash: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Arc<FlowComponent<J>>, AttemptError> {
        if let Some(component) = self.loaded.lock().expect("cache lock").get(hash) {
            return Ok(component.clone());
        }
        let cached = self
            .config
            .cache_dir
            .join(format!("{hash}-{}.cwasm", self.compat));
        let component = match self.deserialize(&cached) {
            Some(component) => component,
            None => {
                let bytes = bytes().map_err(AttemptError::Invalid)?;
                let component = self.compile(bytes).await?;
                if let Ok(serialized) = component.serialize() {
                    write_atomically(&cached, &serialized);
                }
                component
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::FlowPre::new)
            .map_err(|e| {
                AttemptError::Invalid(format!("it does not fit Baton's flow world: {e:#}"))
            })?;
        let component = Arc::new(FlowComponent {
            hash: hash.to_owned(),
            pre,
        });
        self.loaded
            .lock()
            .expect("cache lock")
            .insert(hash.to_owned(), component.clone());
        Ok(component)
    }

    /// Hashes of the versions compiled and ready in this runtime.
    pub fn loaded(&self) -> Vec<String> {
        self.loaded
            .lock()
            .expect("cache lock")
            .keys()
            .cloned()
            .collect()
    }

    async fn compile(&self, bytes: Vec<u8>) -> Result<Component, AttemptError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(AttemptError::Invalid(
                "the bytes are not WebAssembly (no \\0asm header)".into(),
            ));
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| AttemptError::Invalid(format!("compiler task: {e}")))?
            .map_err(|e| AttemptError::Invalid(format!("{e:#}")))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &std::path::Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file sits in this server's own cache folder, was
        // written by `Component::serialize` of an engine with the same
        // compatibility hash (part of its name), and is only ever replaced
        // atomically by a rename.
        unsafe { Component::deserialize_file(&self.engine, path) }.ok()
    }

    /// Validates a component and reads the properties it declares.
    pub async fn inspect(&self, bytes: Vec<u8>) -> Result<(String, FlowProperties), AttemptError> {
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let retention_ms = declared_retention(&bytes)?;
        let component = self.load(&hash, || Ok(bytes)).await?;
        let mut properties = self.properties(&component).await?;
        properties.retention_ms = retention_ms;
        if properties.name.is_empty() || properties.name.len() > 128 {
            return Err(AttemptError::Invalid(
                "the flow's name must be 1 to 128 characters".into(),
            ));
        }
        Ok((hash, properties))
    }

    /// Instantiates the component without a journal (a host call traps) and
    /// calls its `properties` export.
    pub async fn properties(
        &self,
        component: &FlowComponent<J>,
    ) -> Result<FlowProperties, AttemptError> {
        let mut store = self.store(None, Egress::default());
        let flow = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| AttemptError::Invalid(format!("instantiation failed: {e:#}")))?;
        let declared = flow
            .call_properties(&mut store)
            .await
            .map_err(|e| AttemptError::Invalid(describe(&e, &store)))?;
        Ok(FlowProperties {
            name: declared.name,
            other_server_retry: declared.other_server_retry,
            begin_checkpoint: matches!(declared.begin_checkpoint, bindings::BeginCheckpoint::Use),
            max_retries: declared.max_retries,
            retry_interval_ms: declared.retry_interval_ms,
            backoff_factor: declared.backoff_factor,
            max_retry_interval_ms: declared.max_retry_interval_ms,
            resources: declared.resources,
            retention_ms: None,
        })
    }

    /// Runs one attempt: a fresh instance, `run(input)`, the journal back.
    /// The flow's HTTP calls may reach what `egress` allows.
    pub async fn run(
        &self,
        component: &FlowComponent<J>,
        journal: J,
        input: &[u8],
        egress: Egress,
    ) -> Attempt<J> {
        let mut store = self.store(Some(journal), egress);
        let started = Instant::now();
        let mut instantiate = Duration::ZERO;
        let result = async {
            let flow = component.pre.instantiate_async(&mut store).await?;
            instantiate = started.elapsed();
            flow.call_run(&mut store, input).await
        }
        .await;
        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(AttemptError::Flow(FlowFailure {
                message: e.message,
                fatal: e.fatal,
                details: e.details,
            })),
            Err(e) => Err(AttemptError::Trap(describe(&e, &store))),
        };
        Attempt {
            journal: store.into_data().journal.expect("run always has a journal"),
            result,
            instantiate,
        }
    }

    fn store(&self, journal: Option<J>, egress: Egress) -> Store<State<J>> {
        let limits = SandboxLimits {
            memory_bytes: self.config.memory_limit,
            ticks_left: (self.config.time_limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64,
            time_limit: self.config.time_limit,
            wall_limit: self.config.wall_limit,
            wall_deadline: wall_deadline(self.config.wall_limit),
            http_body: self.config.http_body_limit,
        };
        let http = Http {
            client: self.http.clone(),
            egress,
        };
        let mut store = Store::new(&self.engine, State::new(journal, limits, http));
        store.limiter(|state| state);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(State::on_epoch_tick);
        store
    }
}

/// When an attempt starting now must end; a limit past the clock's range
/// is a century.
fn wall_deadline(limit: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A trap in one sentence: a host refusal as is; otherwise the trap and, for
/// a Rust panic, the panic message the flow wrote to stderr.
fn describe<J: Journal>(error: &wasmtime::Error, store: &Store<State<J>>) -> String {
    if let Some(abort) = error.downcast_ref::<HostAbort>() {
        return abort.0.clone();
    }
    let stderr = store.data().stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let panic = stderr
        .lines()
        .skip_while(|line| !line.contains("panicked at"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let root = error.root_cause().to_string();
    if panic.is_empty() {
        format!("flow trapped: {root}")
    } else {
        format!("flow trapped: {root}; {panic}")
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The custom section `#[flow(retention = …)]` writes into the flow's core
/// module: the retention in ms, eight bytes little-endian. A section is
/// used rather than a field of the WIT `properties` record, which would
/// make every component built before it fail to load.
pub const RETENTION_SECTION: &str = "baton:retention";

/// The retention a component declares, if it does. A component and a core
/// module are both an 8-byte header and sections of an id byte and a
/// LEB128 size; in a component a core module nests as section 1 and a
/// component as section 4; a custom section (id 0) starts with its name.
fn declared_retention(bytes: &[u8]) -> Result<Option<u64>, AttemptError> {
    fn leb(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
        }
    }
    fn find(bytes: &[u8]) -> Option<Option<&[u8]>> {
        // The layer field: 1 for a component, 0 for a core module, whose
        // section 1 is its type section.
        let component = bytes.get(6..8)? == [1, 0];
        let mut at = 8;
        while at < bytes.len() {
            let id = bytes[at];
            at += 1;
            let size = leb(bytes, &mut at)?;
            let section = bytes.get(at..at.checked_add(size)?)?;
            at += size;
            match id {
                0 => {
                    let mut inner = 0;
                    let length = leb(section, &mut inner)?;
                    let name = section.get(inner..inner.checked_add(length)?)?;
                    if name == RETENTION_SECTION.as_bytes() {
                        return Some(Some(&section[inner + length..]));
                    }
                }
                // A nested core module or component.
                1 | 4 if component => {
                    if let Some(found) = find(section)? {
                        return Some(Some(found));
                    }
                }
                _ => {}
            }
        }
        Some(None)
    }
    let malformed = || AttemptError::Invalid("the component's sections are malformed".into());
    match find(bytes).ok_or_else(malformed)? {
        None => Ok(None),
        Some(data) => {
            let ms: [u8; 8] = data.try_into().map_err(|_| {
                AttemptError::Invalid(format!(
                    "the {RETENTION_SECTION} section holds {} bytes, not 8",
                    data.len()
                ))
            })?;
            Ok(Some(u64::from_le_bytes(ms)))
        }
    }
}
