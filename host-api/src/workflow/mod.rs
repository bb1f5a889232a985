//! Workflows: a manifest (`workflow.toml`) of steps run in order, each step's output the
//! next one's input, each step with its own credential policy.
//!
//! - [`manifest`]: the model and its parsing (errors name file, line and column).
//!
//! Running a workflow and checking one are the façade's (`latchkey/workflow_run.rs`,
//! `latchkey/workflow_check.rs`): they load and run steps through it.

pub mod manifest;

pub use manifest::{ManifestError, StepSpec, Workflow};
