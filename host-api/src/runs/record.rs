//! A run as the platform keeps it: what ran, for whom, where it is, and what each step did.
//! Stored as JSON in the `runs` namespace; bounded in bytes (the output is cut at
//! [`RunLimits::keep_output_bytes`](super::RunLimits), logs and refusals are bounded by the
//! sandbox), so that no runner can make the store or a host keep more than that per run.

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Waiting for a slot.
    Queued,
    /// Running.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed (or could not start).
    Failed,
    /// The host running it stopped (killed, crashed, cut off from the store) before it
    /// ended: another host found its lease expired.
    Lost,
}

impl RunStatus {
    /// Whether the run has ended (no host will write it again).
    pub fn ended(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Lost
        )
    }
}

/// What a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// A registered component, as one step.
    Component,
    /// A registered workflow.
    Workflow,
}

impl RunKind {
    /// `component` or `workflow`.
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Component => "component",
            RunKind::Workflow => "workflow",
        }
    }
}

/// A step's output as the platform keeps it: text that is JSON when the step returned
/// JSON. Serialized as that JSON itself when it is JSON, else as a string (an output cut
/// at the limit is no longer JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput(pub String);

impl Serialize for RunOutput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(&self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for RunOutput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Any JSON value, kept as its (compact) text: serializing it again gives the same
        // JSON back.
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(RunOutput(raw.get().to_owned()))
    }
}

/// A credential a step resolved (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// Key.
    pub key: String,
    /// Tier it resolved from.
    pub tier: String,
    /// Scope it resolved from.
    pub scope: String,
}

/// A credential refused to a step, in the words the step itself was given (the audit
/// trail keeps the operator's detailed wording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// Key.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// A log line of a step (scrubbed and bounded by the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// `trace` … `error`.
    pub level: String,
    /// The message.
    pub message: String,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// `succeeded` or `failed`.
    pub status: RunStatus,
    /// Wall-clock milliseconds.
    pub duration_ms: f64,
    /// Fetches the step asked for.
    pub fetches: u32,
    /// Credentials resolved, in order of first use.
    pub credentials: Vec<CredentialRecord>,
    /// Credentials refused (the first ones; the audit trail has each).
    pub refusals: Vec<RefusalRecord>,
    /// Log lines.
    pub logs: Vec<LogRecord>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A run: status, output, and what each step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (as in the audit trail): `run-<unix ms>-<random>`, so ids grow with time.
    pub id: String,
    /// A component or a workflow.
    pub kind: RunKind,
    /// What runs: the component's name (or digest), or the workflow's name.
    pub target: String,
    /// Who runs it (the user tiers resolve against this name).
    pub user: String,
    /// Status.
    pub status: RunStatus,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// Unix milliseconds, once ended.
    pub finished_at_ms: Option<u64>,
    /// The last step's output, on success (cut at the kept size: see `output_truncated`).
    pub output: Option<RunOutput>,
    /// Whether `output` was cut at the kept size (the waited answer had all of it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// Steps not run because an earlier one failed.
    pub not_run: Vec<String>,
    /// The host that ran it (an id of that process, for operators).
    #[serde(default)]
    pub host: String,
}

impl RunRecord {
    /// This record as kept: the output cut to at most `max` bytes (at a character
    /// boundary), with the marker set.
    pub(crate) fn kept(&self, max: usize) -> RunRecord {
        let mut kept = self.clone();
        if let Some(RunOutput(text)) = &mut kept.output
            && text.len() > max
        {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            kept.output_truncated = true;
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(output: &str) -> RunRecord {
        RunRecord {
            id: "run-1-00".into(),
            kind: RunKind::Component,
            target: "echo".into(),
            user: "alice".into(),
            status: RunStatus::Succeeded,
            started_at_ms: 1,
            finished_at_ms: Some(2),
            output: Some(RunOutput(output.into())),
            output_truncated: false,
            error: None,
            steps: Vec::new(),
            not_run: Vec::new(),
            host: "h".into(),
        }
    }

    #[test]
    fn json_output_is_shown_as_json_and_text_as_a_string() {
        let json = serde_json::to_value(record(r#"{"ok": true}"#)).expect("json");
        assert_eq!(json["output"]["ok"], true);
        let json = serde_json::to_value(record("not json")).expect("json");
        assert_eq!(json["output"], "not json");
    }

    #[test]
    fn a_record_round_trips_through_its_stored_form() {
        for out in [r#"{"a":[1,2]}"#, "plain text", r#""a string""#, "12"] {
            let r = record(out);
            let bytes = serde_json::to_vec(&r).expect("json");
            let back: RunRecord = serde_json::from_slice(&bytes).expect("parse");
            assert_eq!(
                serde_json::to_value(&back).expect("json"),
                serde_json::to_value(&r).expect("json"),
                "{out}"
            );
        }
    }

    #[test]
    fn kept_output_is_cut_at_a_character_boundary_and_marked() {
        let r = record(&"é".repeat(10));
        let kept = r.kept(5);
        assert!(kept.output_truncated);
        assert_eq!(kept.output.expect("output").0, "éé");
        let same = r.kept(100);
        assert!(!same.output_truncated);
        assert_eq!(same, r);
    }
}
