//! [`Latchkey`]: the one entry point an embedder (the CLI, the server) uses. It owns the
//! store and, once a step is loaded, the runtime; every operation goes through it, and
//! every management operation names the acting [`Principal`] and is checked against its
//! role here.

mod audit;
mod error;
mod manage;
mod platform;
mod scripts;
mod workflow_check;
mod workflow_run;

pub use crate::sandbox::Refusal;
pub use audit::{AuditPage, AuditQuery, LastUse};
pub use error::Error;
pub use platform::{
    RegisteredWorkflow, RunChoices, RunEnded, RunObserver, RunSpec, RunTarget, StartedRun,
};
pub use workflow_check::{CheckReport, KeyCheck, StepCheck};
pub use workflow_run::{RunRequest, StepReport, WorkflowRun};

use crate::cache::{CacheStatus, ComponentCache};
use crate::principal::{Action, Principal};
use crate::resolve::RunContext;
use crate::sandbox::{RunFailure, RunOutcome, Runtime, RuntimeConfig, Step};
use crate::store::{KeyWrapper, Location, SecretStore};
use crate::workflow::Workflow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// How a [`Latchkey`] runs steps.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Engine, limits and network grants for every run.
    pub runtime: RuntimeConfig,
    /// Directory of the compiled-component cache; `None` compiles every step in memory.
    pub cache_dir: Option<PathBuf>,
    /// How many registered runs this host runs at once, and how long their records stay.
    pub runs: crate::runs::RunLimits,
    /// How this host builds agent-written scripts (by default it has no toolchain).
    pub scripts: crate::scripts::ScriptOptions,
}

/// What [`Latchkey::compile`] did.
#[derive(Debug)]
pub struct Compiled {
    /// Hit, compiled, or recompiled (and why).
    pub status: CacheStatus,
    /// The cache entry.
    pub entry: PathBuf,
}

/// The runtime and the cache, started at the first load: managing secrets needs neither
/// the engine nor an HTTP client.
struct Started {
    runtime: Runtime,
    cache: Option<ComponentCache>,
}

/// Latchkey: a sealed store and the runtime that lets steps use its secrets without
/// reading them.
pub struct Latchkey {
    store: Arc<SecretStore>,
    options: Options,
    started: OnceLock<Started>,
    starting: Mutex<()>,
    last_uses: Mutex<audit::LastUses>,
    platform: OnceLock<platform::Platform>,
    compiling: OnceLock<CompileNotice>,
    /// Counts registrations made through this `Latchkey`, for front ends that tell their
    /// clients when the list of what may run changed (MCP's `tools/list_changed`).
    registered: tokio::sync::watch::Sender<u64>,
    /// The store's registry generation as this host last wrote or read it (`None`: not
    /// read yet), to notice registrations other hosts make.
    generation_seen: Mutex<Option<Option<Vec<u8>>>>,
    /// Agent-written scripts built here, started at the first.
    scripts: OnceLock<crate::scripts::built::BuiltScripts>,
    /// Token records this host has authenticated (each still read at every request).
    tokens: crate::tokens::TokenCache,
}

/// Told the file of each step about to be compiled for want of a cache entry.
type CompileNotice = Box<dyn Fn(&Path) + Send + Sync>;

impl Latchkey {
    /// Creates a new store at `dir`, sealed with `master`.
    pub fn init(dir: &Path, master: &dyn KeyWrapper, options: Options) -> Result<Self, Error> {
        Self::init_at(&Location::Dir(dir.to_owned()), master, options)
    }

    /// Opens the store at `dir` with `master`.
    pub fn open(dir: &Path, master: &dyn KeyWrapper, options: Options) -> Result<Self, Error> {
        Self::open_at(&Location::Dir(dir.to_owned()), master, options)
    }

    /// Creates a new store at `location` (a directory, or a migrated PostgreSQL database).
    pub fn init_at(
        location: &Location,
        master: &dyn KeyWrapper,
        options: Options,
    ) -> Result<Self, Error> {
        Self::opened(location, SecretStore::init_at(location, master), options)
    }

    /// Opens the store at `location` with `master`.
    pub fn open_at(
        location: &Location,
        master: &dyn KeyWrapper,
        options: Options,
    ) -> Result<Self, Error> {
        Self::opened(location, SecretStore::open_at(location, master), options)
    }

    /// Brings the schema of the store at `location` to this build's version: the schema
    /// versions before and after, or `None` for a sled directory (it has no schema).
    pub fn migrate(location: &Location) -> Result<Option<(i32, i32)>, Error> {
        match location {
            Location::Postgres(url) => Ok(Some(crate::store::PostgresBackend::migrate(url)?)),
            Location::Dir(_) => Ok(None),
        }
    }

    fn opened(
        location: &Location,
        store: Result<SecretStore, crate::store::StoreError>,
        options: Options,
    ) -> Result<Self, Error> {
        match store {
            Ok(store) => Ok(Self::wrapping(store, options)),
            Err(source) => Err(Error::Open {
                store: location.shown(),
                source,
            }),
        }
    }

    /// Wraps an already opened store (a test's memory store).
    #[cfg(any(test, feature = "testing"))]
    pub fn with_store(store: SecretStore, options: Options) -> Self {
        Self::wrapping(store, options)
    }

    fn wrapping(store: SecretStore, options: Options) -> Self {
        Latchkey {
            store: Arc::new(store),
            options,
            started: OnceLock::new(),
            starting: Mutex::new(()),
            last_uses: Mutex::default(),
            platform: OnceLock::new(),
            compiling: OnceLock::new(),
            registered: tokio::sync::watch::Sender::new(0),
            generation_seen: Mutex::new(None),
            scripts: OnceLock::new(),
            tokens: crate::tokens::TokenCache::default(),
        }
    }

    /// Opens the store's database now instead of at its first use (see
    /// [`SecretStore::open_now`]): for a long-lived host, so that a store in use by another
    /// process fails at start.
    pub fn open_store_now(&self) -> Result<(), Error> {
        Ok(self.store.open_now()?)
    }

    /// How long a static value stays a scrub pattern after it is rotated away or replaced
    /// (24 hours unless set; zero keeps none): see [`SecretStore::set_rotation_grace`].
    pub fn set_rotation_grace(&self, grace: std::time::Duration) {
        self.store.set_rotation_grace(grace);
    }

    /// The options this instance runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn started(&self) -> Result<&Started, Error> {
        if let Some(s) = self.started.get() {
            return Ok(s);
        }
        // One runtime per instance: a second caller waits for the first to finish.
        let _one = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.started.get() {
            return Ok(s);
        }
        let runtime =
            Runtime::new(self.options.runtime.clone(), self.store.clone()).map_err(Error::Start)?;
        let cache = self.options.cache_dir.as_ref().map(|dir| {
            ComponentCache::new(
                dir,
                runtime.engine(),
                crate::cache::CacheKey::of(&self.store),
            )
        });
        Ok(self.started.get_or_init(|| Started { runtime, cache }))
    }

    /// Compiles and checks a step (through the cache, if one is configured).
    pub fn load(&self, bytes: &[u8]) -> Result<Step, Error> {
        self.load_noting(bytes, || ())
    }

    /// [`Latchkey::load`], calling `compiling` just before a step the cache has no entry for
    /// is compiled.
    fn load_noting(&self, bytes: &[u8], compiling: impl FnOnce()) -> Result<Step, Error> {
        let started = self.started()?;
        let step = match &started.cache {
            None => started.runtime.load(bytes)?,
            Some(cache) => {
                let (step, status) = started
                    .runtime
                    .load_cached_noting(bytes, cache, compiling)?;
                tracing::debug!(?status, "loaded through the cache");
                step
            }
        };
        Ok(step)
    }

    /// Tells `notice` the file of every step [`Latchkey::load_file`] (and so a workflow's
    /// loading) is about to compile because the compile cache has no valid entry for it:
    /// the first run of a JavaScript or Python step compiles for seconds, which a front end
    /// says before the wait. Not told without a cache (every load compiles, as asked). Set
    /// once; later calls are ignored.
    pub fn notify_compiling(&self, notice: impl Fn(&Path) + Send + Sync + 'static) {
        let _ = self.compiling.set(Box::new(notice));
    }

    /// Reads the component at `path` and loads it; errors name the file.
    pub fn load_file(&self, path: &Path) -> Result<Step, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            what: "the step",
            path: path.to_owned(),
            source,
        })?;
        let compiling = || {
            if let Some(notice) = self.compiling.get() {
                notice(path);
            }
        };
        self.load_noting(&bytes, compiling)
            .map_err(|e| Error::Load {
                path: path.to_owned(),
                source: Box::new(e),
            })
    }

    /// Compiles a component into the cache without running it (`latchkey compile`).
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, Error> {
        let started = self.started()?;
        let cache = started.cache.as_ref().ok_or(Error::NoCache)?;
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::NotAComponent);
        }
        let cached = cache.load(started.runtime.engine(), bytes)?;
        if let Some(e) = cached.store_error {
            return Err(Error::Cache(e));
        }
        Ok(Compiled {
            status: cached.status,
            entry: cache.entry_path(bytes),
        })
    }

    /// The context of a one-step run of the step called `name`, for `user`, with `by`'s
    /// choices of where its keys come from (workspace, workflow, builder, integrations,
    /// allowlist; see [`RunChoices`]): a local operator's `latchkey run`. Choosing whose and
    /// which keys a run resolves takes [`Action::ChooseRunContext`], and the choices are
    /// checked as a server checks a caller's.
    pub fn step_context(
        &self,
        by: &Principal,
        user: &str,
        name: &str,
        choices: &RunChoices,
    ) -> Result<RunContext, Error> {
        self.allow(by, Action::Run)?;
        self.allow(by, Action::ChooseRunContext)?;
        crate::store::check_name(crate::store::NameKind::User, user)?;
        platform::step_context(choices, name, user)
    }

    /// Runs one step once with `input` (JSON), in a fresh instance, as `by` in the context
    /// `ctx` the caller chose (from [`Latchkey::step_context`]): which scoped keys it resolves is the caller's choice, so it
    /// takes [`Action::ChooseRunContext`] as well as [`Action::Run`] (a local operator's
    /// `latchkey run`; a server's callers go through [`Latchkey::start_run`]).
    pub async fn run_step(
        &self,
        by: &Principal,
        step: &Step,
        ctx: &RunContext,
        input: &str,
    ) -> Result<RunOutcome, RunFailure> {
        if let Err(e) = self
            .allow(by, Action::Run)
            .and_then(|()| self.allow(by, Action::ChooseRunContext))
        {
            return Err(RunFailure {
                error: crate::sandbox::RunError::Instantiate(
                    wasmtime::Error::msg(e.to_string()).into(),
                ),
                logs: Vec::new(),
                credentials: Vec::new(),
                counts: Default::default(),
                refusals: Vec::new(),
            });
        }
        self.run_step_as_chosen(step, ctx, input).await
    }

    /// Runs one step in a context already allowed (a registered run's, a workflow's).
    pub(crate) async fn run_step_as_chosen(
        &self,
        step: &Step,
        ctx: &RunContext,
        input: &str,
    ) -> Result<RunOutcome, RunFailure> {
        match self.started() {
            Ok(s) => s.runtime.run(step, ctx, input).await,
            // Unreachable in practice: a step exists only once the runtime has started.
            Err(e) => Err(RunFailure {
                error: crate::sandbox::RunError::Instantiate(
                    wasmtime::Error::msg(e.to_string()).into(),
                ),
                logs: Vec::new(),
                credentials: Vec::new(),
                counts: Default::default(),
                refusals: Vec::new(),
            }),
        }
    }

    /// Waits for the OAuth2 refreshes runs left under way (a run whose deadline passed
    /// does not wait for its refresh, which goes on to store its tokens): call it before
    /// the process exits. Whether they all finished in time.
    pub async fn settle_refreshes(&self) -> bool {
        match self.started.get() {
            Some(s) => s.runtime.settle_refreshes().await,
            None => true,
        }
    }

    /// Loads every step of `workflow` (all of them before any runs: a broken last step must
    /// not let the first make calls).
    pub fn load_workflow(&self, workflow: &Workflow) -> Result<Vec<Step>, Error> {
        workflow_run::load_steps(self, workflow)
    }

    /// Runs `workflow` as `by` (the invoking user, `run.user`, is theirs to name only if
    /// they may [`Action::ChooseRunContext`]) with `input`: steps in order, each step's
    /// output the next one's input, stopping at the first failure. `on_step` sees each
    /// step as it ends.
    pub async fn run_workflow(
        &self,
        by: &Principal,
        workflow: &Workflow,
        steps: &[Step],
        run: &RunRequest<'_>,
        on_step: impl FnMut(&StepReport),
    ) -> Result<WorkflowRun, Error> {
        self.allow(by, Action::Run)?;
        if run.user != by.name() {
            self.allow(by, Action::ChooseRunContext)?;
        }
        if let Some(schema) = &workflow.input_schema {
            crate::input_schema::check_input(schema, run.input).map_err(Error::Invalid)?;
        }
        Ok(workflow_run::run(self, workflow, steps, run, on_step).await)
    }

    /// Checks `workflow` for `user` without running it: every component loads and every
    /// declared key resolves (metadata only: tiers, scopes and versions, so it needs
    /// [`Action::ReadMetadata`]; nothing is decrypted).
    pub fn check(
        &self,
        by: &Principal,
        workflow: &Workflow,
        user: &str,
    ) -> Result<CheckReport, Error> {
        self.allow(by, Action::ReadMetadata)?;
        Ok(workflow_check::check(self, workflow, user))
    }

    /// Refuses `action` unless `by`'s role allows it: for front ends that add operations
    /// of their own (a server's registry of components), so that roles stay decided here.
    pub fn authorize(&self, by: &Principal, action: Action) -> Result<(), Error> {
        self.allow(by, action)
    }

    /// Refuses `action` unless `by`'s role allows it.
    fn allow(&self, by: &Principal, action: Action) -> Result<(), Error> {
        if by.role().may(action) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                principal: by.name().to_owned(),
                role: by.role(),
                action,
            })
        }
    }

    /// The public key clients seal values to ([`crate::transit`]).
    pub fn transit_public_key(&self) -> [u8; 32] {
        crate::transit::public_key(&self.store)
    }

    /// Opens a value sealed to [`Latchkey::transit_public_key`].
    pub fn open_sealed(
        &self,
        sealed: &[u8],
    ) -> Result<crate::secret::SecretValue, crate::transit::TransitError> {
        crate::transit::open(&self.store, sealed)
    }

    pub(crate) fn store(&self) -> &SecretStore {
        &self.store
    }
}
