//! Workflows: a manifest (`workflow.toml`) of steps run in order, each step's output the
//! next one's input, each step with its own credential policy.
//!
//! - [`manifest`]: the model and its parsing (errors name file, line and column).
//! - `run`: loading every step, then running them in order.
//! - `check`: what a run would resolve, without running or decrypting anything.

mod check;
pub mod manifest;
mod run;

pub use check::{CheckReport, KeyCheck, StepCheck};
pub use manifest::{ManifestError, StepSpec, Workflow};
pub use run::{RunRequest, StepReport, WorkflowRun};
pub(crate) use run::{load_steps, run};

pub(crate) use check::{check, check_with};
