//! The platform: registered components and workflows, and runs of them, kept in the store
//! so that hosts sharing it are one platform (register on one, run on another, read the
//! run on a third). Runs execute on a pool of threads of their own, never on the caller's
//! (a server's request workers stay free however hard steps spin), each holding one of
//! [`RunLimits::max_concurrent`] slots; a run's host renews its lease while it runs, and
//! any host that keeps the platform ([`Latchkey::maintain_runs`]) marks runs whose host
//! died lost and deletes old ones.

use super::RunRequest;
use super::{Error, Latchkey};
use crate::audit::{AuditEvent, AuditRecord};
use crate::principal::{Action, Principal};
use crate::registry::{self, ComponentInfo, ComponentSpec, Registry, WorkflowInfo};
use crate::resolve::{RunContext, new_run_id};
use crate::runs::{
    CredentialRecord, Lease, LogRecord, RefusalRecord, RunKind, RunLimits, RunOutput, RunRecord,
    RunStatus, RunStore, StepRecord,
};
use crate::sandbox::{RunCounts, RunFailure, RunOutcome, Step};
use crate::secret::CredentialKey;
use crate::store::{NameKind, check_name, unix_millis};
use crate::workflow::Workflow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTarget {
    /// A registered component, by name or digest, as one step.
    Component(String),
    /// A registered workflow, by name.
    Workflow(String),
}

/// Where a single-step run takes its keys from, when the caller chooses (only roles that
/// may [`Action::ChooseRunContext`]): the workspace, workflow and builder name whose
/// scoped keys it may resolve, the integration types it declares, and the only keys it
/// may use. Empty: the caller's own default place (workspace `default`, workflow named
/// after the component, integration `http`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunChoices {
    /// Workspace.
    pub workspace: Option<String>,
    /// Workflow name.
    pub workflow: Option<String>,
    /// Builder (tier 5).
    pub builder: Option<String>,
    /// Integration types.
    pub integrations: Vec<String>,
    /// Only these keys may resolve.
    pub allow_keys: Vec<String>,
}

impl RunChoices {
    fn is_empty(&self) -> bool {
        *self == RunChoices::default()
    }
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// What runs.
    pub target: RunTarget,
    /// The first step's input (JSON).
    pub input: String,
    /// Choices of a single-step run's context.
    pub choices: RunChoices,
}

/// A started run: its record as first written, and its end.
pub struct StartedRun {
    /// The record as written when it started.
    pub record: RunRecord,
    done: tokio::sync::oneshot::Receiver<RunRecord>,
}

impl StartedRun {
    /// Waits for the run to end: its record with the whole output (the stored record
    /// keeps [`RunLimits::keep_output_bytes`] of it).
    pub async fn finished(self) -> RunRecord {
        let started = self.record.clone();
        self.done.await.unwrap_or_else(|_| RunRecord {
            status: RunStatus::Failed,
            finished_at_ms: Some(unix_millis()),
            error: Some("the run's task ended without a result (the host is shutting down)".into()),
            ..started
        })
    }
}

/// What a finished run did, for an observer's metrics.
#[derive(Debug, Clone)]
pub struct RunEnded {
    /// Whether every step succeeded.
    pub ok: bool,
    /// Wall-clock seconds from the slot to the end.
    pub seconds: f64,
    /// Each step's counts.
    pub counts: Vec<RunCounts>,
    /// Credentials resolved, over all steps.
    pub credentials: u64,
}

/// Told when runs start and end on this host (a server's metrics).
pub trait RunObserver: Send + Sync {
    /// A run got its slot.
    fn run_started(&self);
    /// A run ended.
    fn run_ended(&self, ended: &RunEnded);
}

/// A workflow as registered, parsed.
#[derive(Debug, Clone)]
pub struct RegisteredWorkflow {
    /// The registration.
    pub info: WorkflowInfo,
    /// Its manifest, parsed; each step's `component` is its digest.
    pub workflow: Workflow,
}

/// The thread pool runs execute on. Dropped without waiting (a runtime dropped inside
/// another's worker would panic): runs still going are abandoned with the process.
struct Pool(Option<tokio::runtime::Runtime>);

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// This host's part of the platform, started at the first run or registration.
pub(super) struct Platform {
    pool: Pool,
    slots: Arc<tokio::sync::Semaphore>,
    /// Runs started and not yet ended on this host.
    active: AtomicUsize,
    ended: tokio::sync::Notify,
    /// Identifies this process in leases and run records.
    host: String,
    /// Ids of the runs this host is running, whose leases it renews.
    mine: Mutex<HashSet<String>>,
    /// Components loaded here, by digest.
    steps: Mutex<HashMap<String, Step>>,
    observer: OnceLock<Arc<dyn RunObserver>>,
    maintaining: OnceLock<()>,
}

impl Platform {
    fn new(limits: &RunLimits) -> Result<Self, Error> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("latchkey-run")
            .enable_all()
            .build()
            .map_err(Error::RunPool)?;
        let mut id = [0u8; 6];
        let _ = getrandom::fill(&mut id);
        let host = format!("{}-{}", std::process::id(), hex::encode(id));
        Ok(Platform {
            pool: Pool(Some(rt)),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent.max(1))),
            active: AtomicUsize::new(0),
            ended: tokio::sync::Notify::new(),
            host,
            mine: Mutex::default(),
            steps: Mutex::default(),
            observer: OnceLock::new(),
            maintaining: OnceLock::new(),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.pool.0 {
            Some(rt) => rt.handle(),
            None => unreachable!("the pool is taken only when the platform is dropped"),
        }
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.mine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether preparing a run may load (compile) a component, which blocks.
#[derive(Debug, Clone, Copy)]
enum Load {
    Yes,
    /// Only steps already loaded here; the run is not prepared otherwise.
    IfLoaded,
}

/// What a started run executes.
pub(super) enum Work {
    Step {
        step: Step,
        ctx: Box<RunContext>,
    },
    Workflow {
        workflow: Box<Workflow>,
        steps: Vec<Step>,
    },
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Latchkey {
    pub(super) fn platform(&self) -> Result<&Platform, Error> {
        if let Some(p) = self.platform.get() {
            return Ok(p);
        }
        let _one = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = self.platform.get() {
            return Ok(p);
        }
        let p = Platform::new(&self.options.runs)?;
        Ok(self.platform.get_or_init(|| p))
    }

    /// Registers a component (`bytes`, a `.wasm` component) to run on the platform:
    /// checked and compiled first, then stored under its digest for every host of the
    /// store, with its name, description and input schema if given.
    pub fn register_component(
        &self,
        by: &Principal,
        bytes: &[u8],
        spec: &ComponentSpec,
    ) -> Result<ComponentInfo, Error> {
        self.allow(by, Action::ManageWorkflows)?;
        if let Some(name) = &spec.name
            && !registry::valid_name(name)
        {
            return Err(invalid(format!(
                "name \"{}\": use 1 to 100 letters, digits, '.', '_' or '-'",
                shown(name)
            )));
        }
        if let Some(d) = &spec.description
            && (d.len() > 4096 || d.chars().any(char::is_control))
        {
            return Err(invalid(
                "description: at most 4096 bytes of text without control characters",
            ));
        }
        if let Some(schema) = &spec.input_schema {
            crate::input_schema::check_schema(schema)
                .map_err(|e| invalid(format!("input_schema: {e}")))?;
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::NotAComponent);
        }
        let step = self.load(bytes)?;
        let info =
            Registry::of(self.store()).put_component(bytes, spec, by.name(), unix_millis())?;
        self.audit_change(
            AuditEvent::ComponentRegister,
            by,
            spec.name.as_deref().unwrap_or(""),
            &format!("ok: {} ({} bytes)", info.digest, info.size),
        )?;
        self.platform()?
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.digest.clone(), step);
        self.registrations_changed();
        Ok(info)
    }

    /// Changes after every registration of a component or workflow, and every change of
    /// the script policy: at once for those made through this `Latchkey`, and at the next
    /// sweep of [`Latchkey::maintain_runs`] (a third of the run lease) for those made by
    /// another host of a shared store.
    pub fn registrations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registered.subscribe()
    }

    /// Tells this host's watchers, and marks the store so that the other hosts' sweeps
    /// tell theirs.
    pub(super) fn registrations_changed(&self) {
        match Registry::of(self.store()).mark_changed() {
            Ok(generation) => {
                *self
                    .generation_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(Some(generation));
            }
            Err(e) => tracing::warn!(
                error = %e,
                "marking the registrations changed failed; other hosts' clients are not told"
            ),
        }
        self.registered.send_modify(|n| *n += 1);
    }

    /// Tells this host's watchers of a change another host made (see
    /// [`Latchkey::registrations`]).
    fn notice_registrations(&self) -> Result<(), Error> {
        let now = Registry::of(self.store()).generation()?;
        let mut seen = self
            .generation_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let changed = seen.as_ref().is_some_and(|before| *before != now);
        *seen = Some(now);
        drop(seen);
        if changed {
            self.registered.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Whether a workflow is registered under `name`, or a component (`RunTarget`'s
    /// kinds), without listing them all: a front end resolving one name (an MCP tool call)
    /// reads one record, however many are registered.
    pub fn is_registered(&self, by: &Principal, kind: &RunTarget) -> Result<bool, Error> {
        self.allow(by, Action::Run)?;
        let registry = Registry::of(self.store());
        Ok(match kind {
            RunTarget::Workflow(name) => {
                registry::valid_name(name) && registry.workflow(name)?.is_some()
            }
            RunTarget::Component(name) => {
                registry::valid_name(name) && registry.digest(name)?.is_some()
            }
        })
    }

    /// Every registered component.
    pub fn components(&self, by: &Principal) -> Result<Vec<ComponentInfo>, Error> {
        self.allow(by, Action::Run)?;
        let mut out = Registry::of(self.store()).components()?;
        out.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
        Ok(out)
    }

    /// Registers workflow `name` from its manifest (TOML), whose steps' `component` fields
    /// name registered components (or digests). Every step is loaded first; the workflow
    /// then runs exactly those components, whatever the names point at later.
    pub fn register_workflow(
        &self,
        by: &Principal,
        name: &str,
        manifest: &str,
    ) -> Result<RegisteredWorkflow, Error> {
        self.allow(by, Action::ManageWorkflows)?;
        if !registry::valid_name(name) {
            return Err(invalid(format!(
                "workflow name \"{}\": use 1 to 100 letters, digits, '.', '_' or '-'",
                shown(name)
            )));
        }
        let mut workflow = Workflow::parse(manifest, Path::new("workflow.toml"))?;
        if workflow.name != name {
            return Err(invalid(format!(
                "the manifest names the workflow {:?}, not {name:?}",
                workflow.name
            )));
        }
        let reg = Registry::of(self.store());
        let mut digests = Vec::new();
        for step in &mut workflow.steps {
            let component = step.component.to_string_lossy().into_owned();
            let digest = reg.digest(&component)?.ok_or_else(|| {
                invalid(format!(
                    "step {}: no registered component \"{}\" (register it first)",
                    step.policy.name,
                    shown(&component)
                ))
            })?;
            step.component = digest.clone().into();
            digests.push(digest);
        }
        for (step, digest) in workflow.steps.iter().zip(&digests) {
            self.registered_step(digest).map_err(|e| Error::Step {
                step: step.policy.name.clone(),
                source: Box::new(e),
            })?;
        }
        let info = WorkflowInfo {
            name: name.to_owned(),
            manifest: manifest.to_owned(),
            digests,
            registered_by: by.name().to_owned(),
            registered_at_ms: unix_millis(),
        };
        reg.put_workflow(&info)?;
        self.audit_change(
            AuditEvent::WorkflowRegister,
            by,
            "",
            &format!("ok: workflow {name}: {}", info.digests.join(", ")),
        )?;
        self.registrations_changed();
        Ok(RegisteredWorkflow { info, workflow })
    }

    /// Every registered workflow, parsed (one whose manifest no longer parses is left out
    /// with a warning).
    pub fn workflows(&self, by: &Principal) -> Result<Vec<RegisteredWorkflow>, Error> {
        self.allow(by, Action::Run)?;
        Ok(Registry::of(self.store())
            .workflows()?
            .into_iter()
            .filter_map(|info| match parse_registered(&info) {
                Ok(workflow) => Some(RegisteredWorkflow { info, workflow }),
                Err(e) => {
                    tracing::warn!(workflow = %info.name, error = %e, "a registered workflow no longer parses");
                    None
                }
            })
            .collect())
    }

    fn registered_workflow(&self, name: &str) -> Result<RegisteredWorkflow, Error> {
        let info = Registry::of(self.store())
            .workflow(name)?
            .ok_or_else(|| Error::NotFound(format!("no workflow \"{}\"", shown(name))))?;
        let workflow = parse_registered(&info)?;
        Ok(RegisteredWorkflow { info, workflow })
    }

    /// Checks registered workflow `name` for the caller: every step's component loads and
    /// where each declared key would come from (metadata only).
    pub fn check_registered(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<super::CheckReport, Error> {
        self.allow(by, Action::ReadMetadata)?;
        let registered = self.registered_workflow(name)?;
        Ok(super::workflow_check::check_with(
            self,
            &registered.workflow,
            by.name(),
            |spec| {
                self.registered_step(&spec.component.to_string_lossy())
                    .map(drop)
            },
        ))
    }

    /// The step of a registered component if it is loaded here already.
    fn loaded_step(&self, digest: &str) -> Option<Step> {
        let platform = self.platform.get()?;
        platform
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// The loaded step of a registered component: loaded here already, or read from the
    /// store (checked against its digest) and loaded through the cache.
    fn registered_step(&self, digest: &str) -> Result<Step, Error> {
        let platform = self.platform()?;
        if let Some(s) = self.loaded_step(digest) {
            return Ok(s);
        }
        let bytes = Registry::of(self.store()).bytes(digest)?.ok_or_else(|| {
            Error::NotFound(format!(
                "the component {digest} is not in the store, or its bytes do not match its digest"
            ))
        })?;
        let step = self.load(&bytes)?;
        platform
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_owned(), step.clone());
        Ok(step)
    }

    /// Starts a run as `by`: checked, its record written to the store (so every host
    /// sees it), then run on this host's run pool. Fails at once with what was wrong
    /// (not found, not allowed, too many runs); a run that starts gets a record whatever
    /// happens to it.
    pub async fn start_run(
        self: &Arc<Self>,
        by: &Principal,
        spec: RunSpec,
    ) -> Result<StartedRun, Error> {
        self.allow(by, Action::Run)?;
        if !spec.choices.is_empty() {
            if matches!(spec.target, RunTarget::Workflow(_)) {
                return Err(invalid(
                    "workspace, workflow_name, builder, integrations and allow_keys apply to a component; a workflow's manifest declares them",
                ));
            }
            self.allow(by, Action::ChooseRunContext)?;
        }
        self.has_room()?;
        // Loading a component is blocking work (a compile): off the caller's async workers,
        // unless every step is loaded here already. Then the run is prepared in place, like
        // its record is written below: a read of the registry, without the round trip to a
        // blocking thread and back that was a waited run's second task hop.
        let (work, id, target_name, kind) =
            match self.prepare(by, &spec.target, &spec.choices, &spec.input, Load::IfLoaded)? {
                Some(prepared) => prepared,
                None => {
                    let this = self.clone();
                    let (who, target) = (by.clone(), spec.target.clone());
                    let choices = spec.choices.clone();
                    let input = spec.input.clone();
                    tokio::task::spawn_blocking(move || {
                        this.prepare(&who, &target, &choices, &input, Load::Yes)
                    })
                    .await
                    .map_err(|e| invalid(format!("preparing the run failed: {e}")))??
                    .ok_or_else(|| invalid("preparing the run failed: a step did not load"))?
                }
            };
        self.launch(by, work, id, target_name, kind, spec.input)
    }

    /// Refuses a run when this host already has as many as it takes.
    pub(super) fn has_room(&self) -> Result<(), Error> {
        let platform = self.platform()?;
        let limits = &self.options.runs;
        if platform.active.load(Ordering::SeqCst) >= limits.max_waiting {
            return Err(Error::Busy(format!(
                "{} runs are already running or waiting on this host; try again shortly",
                limits.max_waiting
            )));
        }
        Ok(())
    }

    /// Starts prepared `work` as `by`'s run `id`: its record written, then run on the
    /// run pool (see [`Latchkey::start_run`]).
    pub(super) fn launch(
        self: &Arc<Self>,
        by: &Principal,
        work: Work,
        id: String,
        target_name: String,
        kind: RunKind,
        input: String,
    ) -> Result<StartedRun, Error> {
        self.has_room()?;
        let platform = self.platform()?;
        let limits = &self.options.runs;
        let now = unix_millis();
        // A slot now, or the run waits for one (and says so in its record until it has it).
        let permit = platform.slots.clone().try_acquire_owned().ok();
        let record = RunRecord {
            id: id.clone(),
            kind,
            target: target_name,
            user: by.name().to_owned(),
            status: if permit.is_some() {
                RunStatus::Running
            } else {
                RunStatus::Queued
            },
            started_at_ms: now,
            finished_at_ms: None,
            output: None,
            output_truncated: false,
            error: None,
            steps: Vec::new(),
            not_run: Vec::new(),
            host: platform.host.clone(),
        };
        let lease = Lease {
            host: platform.host.clone(),
            until_ms: now.saturating_add(millis(limits.lease)),
        };
        platform.mine().insert(id.clone());
        if let Err(e) = RunStore::new(self.store().backend()).create(&record, &lease) {
            platform.mine().remove(&id);
            return Err(e.into());
        }
        platform.active.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let first = record.clone();
        platform.handle().spawn(async move {
            let done = this.execute(first, work, input, permit).await;
            let _ = tx.send(done);
        });
        Ok(StartedRun { record, done: rx })
    }

    /// Starts a run and waits for its end (see [`Latchkey::start_run`]).
    pub async fn run(self: &Arc<Self>, by: &Principal, spec: RunSpec) -> Result<RunRecord, Error> {
        Ok(self.start_run(by, spec).await?.finished().await)
    }

    /// What the run executes, its id, target name and kind; `None` if a step is not loaded
    /// here and `load` says not to load it. An `input` that does not match the target's
    /// declared schema is refused here, before the run has a record.
    fn prepare(
        &self,
        by: &Principal,
        target: &RunTarget,
        choices: &RunChoices,
        input: &str,
        load: Load,
    ) -> Result<Option<(Work, String, String, RunKind)>, Error> {
        let check_input = |schema: Option<&serde_json::Value>| match schema {
            Some(schema) => crate::input_schema::check_input(schema, input).map_err(invalid),
            None => Ok(()),
        };
        let step = |digest: &str| match load {
            Load::Yes => self.registered_step(digest).map(Some),
            Load::IfLoaded => Ok(self.loaded_step(digest)),
        };
        Ok(Some(match target {
            RunTarget::Component(c) => {
                let (digest, schema) =
                    Registry::of(self.store()).runnable(c)?.ok_or_else(|| {
                        Error::NotFound(format!("no registered component \"{}\"", shown(c)))
                    })?;
                check_input(schema.as_ref())?;
                let Some(step) = step(&digest)? else {
                    return Ok(None);
                };
                let name = if registry::is_digest(c) {
                    "step"
                } else {
                    c.as_str()
                };
                let ctx = step_context(choices, name, by.name())?;
                let id = ctx.run_id.clone();
                (
                    Work::Step {
                        step,
                        ctx: Box::new(ctx),
                    },
                    id,
                    c.clone(),
                    RunKind::Component,
                )
            }
            RunTarget::Workflow(w) => {
                let registered = self.registered_workflow(w)?;
                check_input(registered.workflow.input_schema.as_ref())?;
                let steps = registered
                    .info
                    .digests
                    .iter()
                    .zip(&registered.workflow.steps)
                    .map(|(d, s)| {
                        step(d).map_err(|e| Error::Step {
                            step: s.policy.name.clone(),
                            source: Box::new(e),
                        })
                    })
                    .collect::<Result<Option<Vec<_>>, _>>()?;
                let Some(steps) = steps else {
                    return Ok(None);
                };
                (
                    Work::Workflow {
                        workflow: Box::new(registered.workflow),
                        steps,
                    },
                    new_run_id(),
                    w.clone(),
                    RunKind::Workflow,
                )
            }
        }))
    }

    /// Runs `work` in a slot, then writes the run's end (the stored record keeps the
    /// bounded output) and returns it with the whole output.
    async fn execute(
        self: Arc<Self>,
        mut record: RunRecord,
        work: Work,
        input: String,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> RunRecord {
        let Ok(platform) = self.platform() else {
            unreachable!("a run starts only once the platform has")
        };
        let runs = RunStore::new(self.store().backend());
        let permit = match permit {
            Some(p) => Some(p),
            None => {
                let waited = platform.slots.clone().acquire_owned().await.ok();
                record.status = RunStatus::Running;
                if let Err(e) = runs.update(&record) {
                    tracing::warn!(run = %record.id, error = %e, "could not mark a run running");
                }
                waited
            }
        };
        if let Some(o) = platform.observer.get() {
            o.run_started();
        }
        let started = Instant::now();
        let (steps, output, error, not_run, counts) = match work {
            Work::Step { step, ctx } => {
                let t = Instant::now();
                let result = self.run_step_as_chosen(&step, &ctx, &input).await;
                let view = step_record(&ctx.step.name, t.elapsed(), &result);
                let output = result.as_ref().ok().map(|o| RunOutput(o.output.clone()));
                let error = view.error.clone();
                (vec![view], output, error, Vec::new(), vec![counts(&result)])
            }
            Work::Workflow { workflow, steps } => {
                let request = RunRequest {
                    run_id: record.id.clone(),
                    user: &record.user,
                    input: &input,
                };
                let run =
                    super::workflow_run::run(&self, &workflow, &steps, &request, |_| {}).await;
                let views = run
                    .steps
                    .iter()
                    .map(|s| step_record(&s.name, s.elapsed, &s.result))
                    .collect();
                let error = run.failed().and_then(|f| {
                    f.result
                        .as_ref()
                        .err()
                        .map(|e| format!("step {} failed: {}", f.name, e.error))
                });
                let output = run.output().map(|o| RunOutput(o.to_owned()));
                let counts = run.steps.iter().map(|s| counts(&s.result)).collect();
                (views, output, error, run.not_run.clone(), counts)
            }
        };
        drop(permit);
        let ok = error.is_none();
        record.status = if ok {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        record.finished_at_ms = Some(unix_millis());
        record.output = output;
        record.error = error;
        record.steps = steps;
        record.not_run = not_run;
        let kept = record.kept(self.options.runs.keep_output_bytes);
        if let Err(e) = runs.finish(&kept) {
            tracing::error!(run = %record.id, error = %e, "could not write a run's end to the store");
        }
        platform.mine().remove(&record.id);
        if let Some(o) = platform.observer.get() {
            let credentials = record
                .steps
                .iter()
                .map(|s| s.credentials.len() as u64)
                .sum();
            o.run_ended(&RunEnded {
                ok,
                seconds: started.elapsed().as_secs_f64(),
                counts,
                credentials,
            });
        }
        platform.active.fetch_sub(1, Ordering::SeqCst);
        platform.ended.notify_waiters();
        record
    }

    /// Run `id`, if `by` may see it: their own, or anyone's for a role that may
    /// [`Action::ReadAllRuns`]. Another's run is "not found", so ids cannot be probed.
    pub fn run_record(&self, by: &Principal, id: &str) -> Result<RunRecord, Error> {
        self.allow(by, Action::Run)?;
        let not_found = || Error::NotFound(format!("no run \"{}\"", shown(id)));
        if !valid_run_id(id) {
            return Err(not_found());
        }
        match RunStore::new(self.store().backend()).get(id)? {
            Some(r) if r.user == by.name() || by.role().may(Action::ReadAllRuns) => Ok(r),
            _ => Err(not_found()),
        }
    }

    /// Up to `limit` (at most 100) runs `by` may see, newest first, started before run
    /// `before` if given: their own, or everyone's for a role that may
    /// [`Action::ReadAllRuns`].
    pub fn runs(
        &self,
        by: &Principal,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, Error> {
        self.allow(by, Action::Run)?;
        if let Some(b) = before
            && !valid_run_id(b)
        {
            return Err(invalid(format!("before: \"{}\" is not a run id", shown(b))));
        }
        let user = (!by.role().may(Action::ReadAllRuns)).then(|| by.name());
        Ok(RunStore::new(self.store().backend()).newest(user, before, limit.clamp(1, 100))?)
    }

    /// Runs started on this host and not yet ended.
    pub fn runs_in_flight(&self) -> usize {
        self.platform
            .get()
            .map_or(0, |p| p.active.load(Ordering::SeqCst))
    }

    /// Waits until no run is in flight on this host, or `timeout` passes; returns how
    /// many are left.
    pub async fn wait_for_runs(&self, timeout: Duration) -> usize {
        let Some(p) = self.platform.get() else {
            return 0;
        };
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let notified = p.ended.notified();
            let left = p.active.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return p.active.load(Ordering::SeqCst);
            }
        }
    }

    /// Tells `observer` of every run that starts and ends on this host from now on (set
    /// once; later calls are ignored).
    pub fn observe_runs(&self, observer: Arc<dyn RunObserver>) -> Result<(), Error> {
        let _ = self.platform()?.observer.set(observer);
        Ok(())
    }

    /// Keeps the platform's runs from now on, on this host's run pool: renews the leases
    /// of this host's runs, marks runs lost whose host stopped renewing theirs (with an
    /// audit record), and deletes old runs ([`RunLimits::keep_for`],
    /// [`RunLimits::keep_bytes`]), and tells [`Latchkey::registrations`] watchers of
    /// registrations other hosts made. For long-lived hosts (a server); idempotent.
    pub fn maintain_runs(self: &Arc<Self>) -> Result<(), Error> {
        let platform = self.platform()?;
        if platform.maintaining.set(()).is_err() {
            return Ok(());
        }
        // The generation now: what later sweeps compare with.
        self.notice_registrations()?;
        let weak = Arc::downgrade(self);
        let every = (self.options.runs.lease / 3).max(Duration::from_millis(50));
        platform.handle().spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_eviction = Instant::now();
            loop {
                tick.tick().await;
                let Some(lk) = weak.upgrade() else { return };
                let evict = last_eviction.elapsed() >= EVICT_EVERY;
                if evict {
                    last_eviction = Instant::now();
                }
                let job = lk.clone();
                let done = tokio::task::spawn_blocking(move || job.keep_runs(evict)).await;
                if let Ok(Err(e)) = done {
                    tracing::warn!(error = %e, "keeping the platform's runs failed; trying again");
                }
            }
        });
        Ok(())
    }

    /// One round of [`Latchkey::maintain_runs`].
    fn keep_runs(&self, evict: bool) -> Result<(), Error> {
        if let Err(e) = self.notice_registrations() {
            tracing::warn!(error = %e, "reading the registry's generation failed; trying again");
        }
        let platform = self.platform()?;
        let runs = RunStore::new(self.store().backend());
        let limits = &self.options.runs;
        let now = unix_millis();
        let mine: Vec<String> = platform.mine().iter().cloned().collect();
        if !mine.is_empty() {
            runs.renew(
                &mine,
                &platform.host,
                now.saturating_add(millis(limits.lease)),
            )?;
        }
        for (id, lease) in runs.expired(now)? {
            if platform.mine().contains(&id) {
                continue;
            }
            if let Some(lost) = runs.mark_lost(&id, &lease, now)? {
                let mut record = AuditRecord::change(
                    AuditEvent::RunLost,
                    &format!("host:{}", platform.host),
                    "",
                    &format!("lost: host {} stopped renewing the run's lease", lease.host),
                );
                record.run_id = lost.id.clone();
                record.user = lost.user.clone();
                record.workflow = lost.target.clone();
                crate::audit::append_durable(self.store(), &record)
                    .map_err(crate::store::StoreError::from)?;
                tracing::warn!(run = %lost.id, host = %lease.host, "marked a run lost");
            }
        }
        if evict {
            let older = now.saturating_sub(millis(limits.keep_for));
            let n = runs.evict(older, limits.keep_bytes)?;
            if n > 0 {
                tracing::info!(deleted = n, "deleted old run records");
            }
        }
        Ok(())
    }

    pub(super) fn audit_change(
        &self,
        event: AuditEvent,
        by: &Principal,
        key: &str,
        outcome: &str,
    ) -> Result<(), Error> {
        let record = AuditRecord::change(event, by.name(), key, outcome);
        crate::audit::append_durable(self.store(), &record)
            .map_err(crate::store::StoreError::from)?;
        Ok(())
    }
}

/// How often a host keeping the platform deletes old runs.
const EVICT_EVERY: Duration = Duration::from_secs(60);

/// Run ids as [`new_run_id`] makes them: bounded, and nothing a key could be built from.
fn valid_run_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with("run-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A registered workflow's manifest, parsed, each step's component its digest.
fn parse_registered(info: &WorkflowInfo) -> Result<Workflow, Error> {
    let mut workflow = Workflow::parse(&info.manifest, Path::new("workflow.toml"))?;
    if workflow.steps.len() != info.digests.len() {
        return Err(invalid(format!(
            "the registration of workflow {} is inconsistent (steps and digests differ)",
            info.name
        )));
    }
    for (step, digest) in workflow.steps.iter_mut().zip(&info.digests) {
        step.component = digest.into();
    }
    Ok(workflow)
}

/// The context of a single-step run of component `name` by `user`, with the caller's
/// choices (already allowed).
pub(super) fn step_context(c: &RunChoices, name: &str, user: &str) -> Result<RunContext, Error> {
    let workspace = c.workspace.as_deref().unwrap_or("default");
    let workflow = c.workflow.as_deref().unwrap_or(name);
    check_name(NameKind::Workspace, workspace).map_err(|e| invalid(format!("workspace: {e}")))?;
    check_name(NameKind::Workflow, workflow).map_err(|e| invalid(format!("workflow_name: {e}")))?;
    let mut ctx = RunContext::single_step(workspace, workflow, user);
    if let Some(b) = &c.builder {
        check_name(NameKind::Builder, b).map_err(|e| invalid(format!("builder: {e}")))?;
        ctx.builder = Some(b.clone());
    }
    if !c.integrations.is_empty() {
        if let Some(bad) = c
            .integrations
            .iter()
            .find(|i| !crate::store::valid_integration(i))
        {
            return Err(invalid(format!(
                "integrations: invalid integration type \"{}\"",
                shown(bad)
            )));
        }
        ctx.step.integrations = c.integrations.iter().cloned().collect();
    }
    if !c.allow_keys.is_empty() {
        let keys = c
            .allow_keys
            .iter()
            .map(|k| CredentialKey::new(k))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("allow_keys: {e}")))?;
        ctx.step.allowlist = Some(keys);
    }
    Ok(ctx)
}

fn counts(result: &Result<RunOutcome, RunFailure>) -> RunCounts {
    match result {
        Ok(o) => o.counts,
        Err(f) => f.counts,
    }
}

/// A step's part of the run record.
fn step_record(
    name: &str,
    elapsed: Duration,
    result: &Result<RunOutcome, RunFailure>,
) -> StepRecord {
    let (logs, credentials, refusals) = match result {
        Ok(o) => (&o.logs, &o.credentials, &[][..]),
        Err(f) => (&f.logs, &f.credentials, f.refusals.as_slice()),
    };
    StepRecord {
        name: name.to_owned(),
        status: if result.is_ok() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        },
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        fetches: counts(result).fetches,
        credentials: credentials
            .iter()
            .map(|c| CredentialRecord {
                key: c.key.clone(),
                tier: c.tier.to_string(),
                scope: c.scope.clone(),
            })
            .collect(),
        refusals: refusals
            .iter()
            .map(|r| RefusalRecord {
                key: r.key.clone(),
                reason: r.shown.clone(),
            })
            .collect(),
        logs: logs
            .iter()
            .map(|l| LogRecord {
                level: l.level.to_owned(),
                message: l.message.clone(),
            })
            .collect(),
        error: result.as_ref().err().map(|f| f.error.to_string()),
    }
}

/// Text a caller sent, as an error message may show it: control characters escaped, and
/// at most 100 characters of it.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(100).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{more}", crate::guest_log::visible(&cut))
}
