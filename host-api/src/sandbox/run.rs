//! One run of a step: a fresh store, the instance, the call within the deadline, and the
//! output or error checked for credential values before anyone sees it.

use super::engine::EPOCH_TICK;
use super::{HostState, RunCounts, RunError, RunFailure, Runtime, Step};
use crate::audit;
use crate::bindings::Workflow;
use crate::credentials::CredentialUse;
use crate::guest_log::GuestLogLine;
use crate::resolve::RunContext;
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};

/// Time allowed past the run's deadline to check its output or error message for credential
/// values: the guest has stopped, and the output is bounded by `max_output_bytes`.
pub const TEXT_SCRUB_GRACE: Duration = Duration::from_secs(1);

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The step's output (JSON).
    pub output: String,
    /// Credentials resolved, in order of first use.
    pub credentials: Vec<CredentialUse>,
    /// Fetches made.
    pub fetches: u32,
    /// Fetches, injections and refusals.
    pub counts: RunCounts,
    /// Guest log lines.
    pub logs: Vec<GuestLogLine>,
    /// Wall-clock time of the run.
    pub duration: Duration,
}

/// What the guest's `run` returned: its output, or its error message.
type Returned = Result<String, String>;

impl Runtime {
    /// Runs `step` once with `input`, in a fresh instance.
    ///
    /// Fresh store → instantiate and call, within the deadline → (strict durability) audit
    /// records synced → output (or error message) checked → outcome, or failure with the
    /// logs.
    pub async fn run(
        &self,
        step: &Step,
        ctx: &RunContext,
        input: &str,
    ) -> Result<RunOutcome, RunFailure> {
        let started = Instant::now();
        let mut store = self.fresh_store(ctx, started);
        let returned = self.call(step, &mut store, input).await;
        store.data().run.write_held();
        if self.shared.durability == super::Durability::Strict {
            let _ = audit::flush(&self.shared.store);
        }
        match checked_output(returned, &mut store) {
            Ok(output) => {
                let state = store.into_data();
                Ok(RunOutcome {
                    output,
                    counts: state.counts(),
                    credentials: state.credentials.used,
                    fetches: state.http.fetches,
                    logs: state.log.into_lines_noting_dropped(),
                    duration: started.elapsed(),
                })
            }
            Err(error) => {
                let state = store.into_data();
                Err(RunFailure {
                    counts: state.counts(),
                    refusals: state.run.take_refusals(),
                    error,
                    logs: state.log.lines,
                    credentials: state.credentials.used,
                })
            }
        }
    }

    /// A store for one run: its host state, the memory limiter, and the epoch deadline.
    fn fresh_store(&self, ctx: &RunContext, started: Instant) -> Store<HostState> {
        let limits = &self.shared.limits;
        let state = HostState::new(self.shared.clone(), ctx, started + limits.deadline);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick the guest yields to the scheduler, so that a step spinning in guest
        // code (or looping on host calls that answer at once) never holds a worker thread:
        // other runs and the server's own requests get their turn. Past the run's deadline
        // the next tick traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().run.deadline_at {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    /// Instantiates `step` and calls its `run`. The epoch deadline stops guest code; the
    /// timeout here also bounds time spent awaiting a host call (a slow upstream).
    async fn call(
        &self,
        step: &Step,
        store: &mut Store<HostState>,
        input: &str,
    ) -> Result<Returned, RunError> {
        let deadline = self.shared.limits.deadline;
        let call = async {
            let instance = instantiate(step, store).await?;
            instance
                .call_run(&mut *store, input)
                .await
                .map_err(|e| classify_trap(&e, store))
        };
        match tokio::time::timeout(deadline + EPOCH_TICK * 2, call).await {
            Err(_) => Err(RunError::Deadline(deadline)),
            Ok(returned) => returned,
        }
    }
}

/// A fresh instance of `step` in `store`.
async fn instantiate(step: &Step, store: &mut Store<HostState>) -> Result<Workflow, RunError> {
    step.pre.instantiate_async(&mut *store).await.map_err(|e| {
        if let Some(what) = store.data().limiter.hit {
            RunError::Trap(store.data().limiter.message(what))
        } else {
            RunError::Instantiate(e.into())
        }
    })
}

/// The step's output, within the output limit and scrubbed of every value the run
/// injected; or why there is none (the guest's error message is checked the same way).
fn checked_output(
    returned: Result<Returned, RunError>,
    store: &mut Store<HostState>,
) -> Result<String, RunError> {
    let max = store.data().run.limits().max_output_bytes;
    let output = match returned? {
        Ok(output) => output,
        Err(message) => return Err(guest_error(message, store, max)),
    };
    if output.len() > max {
        return Err(RunError::OutputTooLarge {
            len: output.len(),
            limit: max,
        });
    }
    let by = text_deadline(store);
    store
        .data_mut()
        .http
        .injected
        .scrub_text(&output, by)
        .map_err(|_| RunError::Unchecked("output"))
}

/// The guest's error message as the operator may see it: scrubbed and made visible, or
/// withheld if it is over the output limit (scrubbing it would cost time in proportion
/// to the guest's whim; cutting it could leave part of a value).
fn guest_error(message: String, store: &mut Store<HostState>, max: usize) -> RunError {
    if message.len() > max {
        return RunError::Guest(format!(
            "[an error message of {} bytes, over the {max}-byte output limit, was withheld]",
            message.len()
        ));
    }
    let by = text_deadline(store);
    match store.data_mut().http.injected.scrub_text(&message, by) {
        Ok(msg) => RunError::Guest(crate::guest_log::visible(&msg).into_owned()),
        Err(_) => RunError::Unchecked("error message"),
    }
}

/// When checking the step's output or error message must be done.
fn text_deadline(store: &Store<HostState>) -> Instant {
    store.data().run.deadline_at.max(Instant::now()) + TEXT_SCRUB_GRACE
}

/// Why the call trapped, in words: a limit, the deadline, a panic, or wasmtime's message.
fn classify_trap(e: &wasmtime::Error, store: &Store<HostState>) -> RunError {
    if let Some(what) = store.data().limiter.hit {
        return RunError::Trap(store.data().limiter.message(what));
    }
    // wasmtime bounds the handles one store may lend (100 000); a guest passing that many
    // borrowed credentials in one request hits it before the host sees the request. Say
    // so instead of showing wasmtime's wording.
    if format!("{e:#}").contains("store handle limit exceeded") {
        return RunError::Trap(
            "the guest passed more credential handles in one call than the host accepts \
             (wasmtime's limit on handles lent by a store)"
                .to_owned(),
        );
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::Interrupt => {
                return RunError::Deadline(store.data().run.shared.limits.deadline);
            }
            wasmtime::Trap::StackOverflow => {
                "stack overflow (the guest recursed too deeply)".to_owned()
            }
            wasmtime::Trap::UnreachableCodeReached => {
                "the guest panicked or aborted (wasm `unreachable` executed)".to_owned()
            }
            other => other.to_string(),
        };
        return RunError::Trap(what);
    }
    RunError::Trap(format!("{e:#}"))
}
