//! `workflow.toml`: a workflow's steps and its credential policy.
//!
//! ```toml
//! name = "issue-digest"        # workflow name (scopes workflow:W/F, user:U@W/F, builder:B@W/F)
//! description = "Posts a digest of new issues"   # optional: what it does (MCP tool description)
//! workspace = "acme"           # optional, default "default"
//! builder = "bob"              # optional: whose keys the `builder` tier uses
//! order = ["user-workflow", "user", "workflow", "workspace", "builder", "platform"]  # optional
//! allow = ["GITHUB_TOKEN", "SLACK_TOKEN"]   # optional workflow allowlist
//!
//! [input]                      # optional: a JSON Schema of the run's input (MCP tool schema)
//! type = "object"
//! required = ["repo"]
//! properties.repo = { type = "string" }
//!
//! [[step]]
//! name = "fetch"                          # unique within the workflow
//! component = "github_issues.wasm"        # relative to this file
//! integrations = ["http"]                 # optional, default ["http"]
//! allow = ["GITHUB_TOKEN"]                # optional step allowlist
//! pins = { GITHUB_TOKEN = "builder" }     # optional per-key tiers
//! ```
//!
//! Tier names (in `order` and `pins`): `user-workflow`, `user`, `workflow`, `workspace`,
//! `builder`, `platform`. In a pin, `user` means "the user's key": `user-workflow`, then
//! `user`. A pin may also be a list of tiers, tried in order: `{ KEY = ["user", "builder"] }`.
//!
//! Unknown fields are refused; every error names the file, line and column and says how to
//! fix it.

use crate::resolve::{DEFAULT_ORDER, RunContext, StepPolicy, Tier};
use crate::secret::CredentialKey;
use crate::store::{NameKind, Scope, check_name, valid_integration};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Why a manifest was refused: where, and what to do about it.
#[derive(Debug)]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place.
    pub at: Option<(usize, usize)>,
    /// What is wrong and how to fix it (for a TOML syntax or shape error, toml's own
    /// report, which quotes the line).
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(
                f,
                "{}:{line}:{col}: {}",
                self.path.display(),
                self.message.trim_end()
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message.trim_end()),
        }
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    description: Option<Spanned<String>>,
    input: Option<Spanned<toml::Table>>,
    workspace: Option<Spanned<String>>,
    builder: Option<Spanned<String>>,
    order: Option<Spanned<Vec<Spanned<String>>>>,
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    component: Spanned<String>,
    integrations: Option<Spanned<Vec<Spanned<String>>>>,
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pins: BTreeMap<Spanned<String>, Spanned<PinSpec>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PinSpec {
    One(String),
    Many(Vec<String>),
}

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// The component file (resolved against the manifest's directory).
    pub component: PathBuf,
    /// What the step may resolve.
    pub policy: StepPolicy,
}

impl StepSpec {
    /// The keys the step declares: its allowlist (or else the workflow's) plus pinned keys.
    /// `None` when neither the step nor the workflow has an allowlist.
    pub fn declared_keys(
        &self,
        workflow_allow: Option<&BTreeSet<CredentialKey>>,
    ) -> Option<BTreeSet<CredentialKey>> {
        let list = self.policy.allowlist.as_ref().or(workflow_allow)?;
        let mut keys = list.clone();
        keys.extend(self.policy.pins.keys().cloned());
        Some(keys)
    }
}

/// A parsed, validated workflow manifest.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Workflow name.
    pub name: String,
    /// Workspace.
    pub workspace: String,
    /// Builder, if any.
    pub builder: Option<String>,
    /// Resolution order.
    pub order: Vec<Tier>,
    /// Workflow allowlist.
    pub allow: Option<BTreeSet<CredentialKey>>,
    /// What the workflow does, for people and agents choosing a tool.
    pub description: Option<String>,
    /// A JSON Schema of the run's input (`[input]`), if the author gave one.
    pub input_schema: Option<serde_json::Value>,
    /// Steps, in order.
    pub steps: Vec<StepSpec>,
}

/// The longest `description`, in bytes (the same bound as a component's).
const MAX_DESCRIPTION: usize = 4096;

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

fn tier_names() -> String {
    DEFAULT_ORDER
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What every step is checked against: the workflow-level settings.
struct WorkflowLevel<'a> {
    allow: Option<&'a BTreeSet<CredentialKey>>,
    has_builder: bool,
    base: &'a Path,
}

/// The manifest being parsed: where errors point.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.to_owned(),
            at: Some(line_col(self.text, span.start)),
            message: message.into(),
        }
    }

    fn err_nowhere(&self, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.to_owned(),
            at: None,
            message: message.into(),
        }
    }

    fn toml(&self) -> Result<RawManifest, ManifestError> {
        toml::from_str(self.text).map_err(|e| ManifestError {
            path: self.path.to_owned(),
            at: e.span().map(|s| line_col(self.text, s.start)),
            message: format!(
                "{}\n(the manifest format is described in examples/workflows/README.md)",
                e.to_string().trim_end()
            ),
        })
    }

    /// The workflow's name and workspace (default `default`), valid as scope names.
    fn names(&self, raw: &RawManifest) -> Result<(String, String), ManifestError> {
        let workspace = raw
            .workspace
            .as_ref()
            .map_or_else(|| "default".to_owned(), |w| w.get_ref().clone());
        let name = raw.name.get_ref().clone();
        let scope = Scope::Workflow {
            workspace: workspace.clone(),
            workflow: name.clone(),
        };
        if let Err(e) = scope.validated() {
            let span = match (&raw.workspace, e.name) {
                (Some(w), Some(NameKind::Workspace)) => w.span(),
                _ => raw.name.span(),
            };
            return Err(self.err(span, format!("{}; choose another name", e.reason)));
        }
        Ok((name, workspace))
    }

    /// `description`: at most 4096 bytes of text without control characters, as a
    /// component's registration allows.
    fn description(&self, raw: Option<&Spanned<String>>) -> Result<Option<String>, ManifestError> {
        let Some(d) = raw else { return Ok(None) };
        if d.get_ref().len() > MAX_DESCRIPTION || d.get_ref().chars().any(char::is_control) {
            return Err(self.err(
                d.span(),
                format!(
                    "description: at most {MAX_DESCRIPTION} bytes of text without control characters"
                ),
            ));
        }
        Ok(Some(d.get_ref().clone()))
    }

    /// `[input]`: a JSON Schema, kept as JSON. TOML has no null, and a date-time has no
    /// JSON form: one in the schema is refused rather than turned into something else.
    fn input(
        &self,
        raw: Option<&Spanned<toml::Table>>,
    ) -> Result<Option<serde_json::Value>, ManifestError> {
        let Some(t) = raw else { return Ok(None) };
        fn has_datetime(v: &toml::Value) -> bool {
            match v {
                toml::Value::Datetime(_) => true,
                toml::Value::Array(a) => a.iter().any(has_datetime),
                toml::Value::Table(t) => t.values().any(has_datetime),
                _ => false,
            }
        }
        if t.get_ref().values().any(has_datetime) {
            return Err(self.err(
                t.span(),
                "[input]: a JSON Schema has no date-time values; quote it as a string",
            ));
        }
        let schema = serde_json::to_value(t.get_ref())
            .map_err(|e| self.err(t.span(), format!("[input]: not expressible as JSON: {e}")))?;
        crate::input_schema::check_schema(&schema)
            .map_err(|e| self.err(t.span(), format!("[input]: {e}")))?;
        Ok(Some(schema))
    }

    fn builder(&self, raw: Option<&Spanned<String>>) -> Result<Option<String>, ManifestError> {
        let Some(b) = raw else { return Ok(None) };
        check_name(NameKind::Builder, b.get_ref())
            .map_err(|e| self.err(b.span(), format!("builder: {}", e.reason)))?;
        Ok(Some(b.get_ref().clone()))
    }

    fn order(
        &self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<Tier>, ManifestError> {
        let Some(list) = raw else {
            return Ok(DEFAULT_ORDER.to_vec());
        };
        if list.get_ref().is_empty() {
            return Err(self.err(
                list.span(),
                format!(
                    "`order` is empty; list the tiers to try, from: {}",
                    tier_names()
                ),
            ));
        }
        let mut order = Vec::new();
        for s in list.get_ref() {
            let t = self.tier(s.get_ref(), s.span())?;
            if order.contains(&t) {
                return Err(self.err(
                    s.span(),
                    format!("tier {t} appears twice in `order`; remove one"),
                ));
            }
            order.push(t);
        }
        Ok(order)
    }

    fn key(&self, s: &Spanned<String>) -> Result<CredentialKey, ManifestError> {
        CredentialKey::new(s.get_ref()).map_err(|e| {
            self.err(
                s.span(),
                format!(
                    "invalid credential key {:?}: {e} (keys are A-Z, 0-9 and _, e.g. SLACK_TOKEN)",
                    s.get_ref()
                ),
            )
        })
    }

    fn allowlist(
        &self,
        list: &[Spanned<String>],
        what: &str,
    ) -> Result<BTreeSet<CredentialKey>, ManifestError> {
        let mut keys = BTreeSet::new();
        for s in list {
            let k = self.key(s)?;
            if !keys.insert(k) {
                return Err(self.err(
                    s.span(),
                    format!(
                        "{} is listed twice in the {what} allowlist; remove one",
                        s.get_ref()
                    ),
                ));
            }
        }
        Ok(keys)
    }

    fn tier(&self, s: &str, span: Range<usize>) -> Result<Tier, ManifestError> {
        Tier::parse(s).ok_or_else(|| {
            self.err(
                span,
                format!("unknown tier {s:?}; use one of: {}", tier_names()),
            )
        })
    }

    /// One `[[step]]`; `seen` collects step names so that each is unique.
    fn step(
        &self,
        s: &RawStep,
        wf: &WorkflowLevel<'_>,
        seen: &mut BTreeSet<String>,
    ) -> Result<StepSpec, ManifestError> {
        let name = s.name.get_ref().clone();
        check_name(NameKind::Step, &name)
            .map_err(|e| self.err(s.name.span(), format!("{}; choose another", e.reason)))?;
        if !seen.insert(name.clone()) {
            return Err(self.err(
                s.name.span(),
                format!("a step named {name:?} already exists; step names must be unique"),
            ));
        }
        if s.component.get_ref().is_empty() {
            return Err(self.err(
                s.component.span(),
                "`component` is empty; give the path of a .wasm file, relative to this manifest",
            ));
        }
        let integrations = self.integrations(s.integrations.as_ref())?;
        let allowlist = self.step_allowlist(s, &name, wf.allow)?;
        let pins = self.pins(s, &name, allowlist.as_ref().or(wf.allow), wf.has_builder)?;
        Ok(StepSpec {
            component: wf.base.join(s.component.get_ref()),
            policy: StepPolicy {
                name,
                integrations,
                allowlist,
                pins,
            },
        })
    }

    /// A step's integration types; default `["http"]`.
    fn integrations(
        &self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<BTreeSet<String>, ManifestError> {
        let Some(list) = raw else {
            return Ok(BTreeSet::from(["http".to_owned()]));
        };
        if list.get_ref().is_empty() {
            return Err(self.err(
                list.span(),
                "`integrations` is empty, so the step could use no secret; list its types (e.g. [\"http\", \"slack\"]) or remove the field for the default [\"http\"]",
            ));
        }
        let mut set = BTreeSet::new();
        for i in list.get_ref() {
            if !valid_integration(i.get_ref()) {
                return Err(self.err(
                    i.span(),
                    format!(
                        "invalid integration type {:?}: use lowercase letters, digits, '-' or '_' (e.g. http, slack, sendgrid)",
                        i.get_ref()
                    ),
                ));
            }
            set.insert(i.get_ref().clone());
        }
        Ok(set)
    }

    /// A step's own allowlist, which may only narrow the workflow's.
    fn step_allowlist(
        &self,
        s: &RawStep,
        step: &str,
        workflow: Option<&BTreeSet<CredentialKey>>,
    ) -> Result<Option<BTreeSet<CredentialKey>>, ManifestError> {
        let Some(list) = &s.allow else {
            return Ok(None);
        };
        let keys = self.allowlist(list, &format!("step {step:?}"))?;
        if let Some(wf_list) = workflow {
            for k in list {
                if !wf_list.contains(&self.key(k)?) {
                    return Err(self.err(
                        k.span(),
                        format!(
                            "step {step:?} allows {} but the workflow's `allow` does not, so it could never resolve; add it to the workflow's `allow` or remove it here",
                            k.get_ref()
                        ),
                    ));
                }
            }
        }
        Ok(Some(keys))
    }

    /// A step's pins: each pinned key must be on the allowlist in force (`allow`).
    fn pins(
        &self,
        s: &RawStep,
        step: &str,
        allow: Option<&BTreeSet<CredentialKey>>,
        has_builder: bool,
    ) -> Result<BTreeMap<CredentialKey, Vec<Tier>>, ManifestError> {
        let mut pins = BTreeMap::new();
        for (k, v) in &s.pins {
            let key = self.key(k)?;
            if allow.is_some_and(|l| !l.contains(&key)) {
                return Err(self.err(
                    k.span(),
                    format!(
                        "step {step:?} pins {key} but {key} is not on its allowlist, so it could never resolve; add it to `allow`"
                    ),
                ));
            }
            let tiers = self.pin_tiers(&key, v)?;
            if tiers == [Tier::Builder] && !has_builder {
                return Err(self.err(
                    v.span(),
                    format!("{key} is pinned to the builder tier but the workflow declares no `builder`; add `builder = \"NAME\"`"),
                ));
            }
            pins.insert(key, tiers);
        }
        Ok(pins)
    }

    /// The tiers of one pin, in order, without repeats (`user` stands for two tiers).
    fn pin_tiers(
        &self,
        key: &CredentialKey,
        v: &Spanned<PinSpec>,
    ) -> Result<Vec<Tier>, ManifestError> {
        let names: Vec<&str> = match v.get_ref() {
            PinSpec::One(one) => vec![one.as_str()],
            PinSpec::Many(many) => many.iter().map(String::as_str).collect(),
        };
        if names.is_empty() {
            return Err(self.err(v.span(), format!("the pin of {key} is empty; name a tier")));
        }
        let mut tiers: Vec<Tier> = Vec::new();
        for n in names {
            let parsed = Tier::parse_pin(n).ok_or_else(|| {
                self.err(
                    v.span(),
                    format!(
                        "unknown tier {n:?} in the pin of {key}; use one of: {}",
                        tier_names()
                    ),
                )
            })?;
            for t in parsed {
                if !tiers.contains(&t) {
                    tiers.push(t);
                }
            }
        }
        Ok(tiers)
    }
}

impl Workflow {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_owned(),
            at: None,
            message: format!("cannot read the workflow manifest: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is used for messages and to resolve
    /// component paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let cx = Ctx { path, text };
        let raw = cx.toml()?;
        let (name, workspace) = cx.names(&raw)?;
        let builder = cx.builder(raw.builder.as_ref())?;
        let description = cx.description(raw.description.as_ref())?;
        let input_schema = cx.input(raw.input.as_ref())?;
        let order = cx.order(raw.order.as_ref())?;
        let allow = match &raw.allow {
            Some(list) => Some(cx.allowlist(list, "workflow")?),
            None => None,
        };
        if raw.steps.is_empty() {
            return Err(cx.err_nowhere(
                "the workflow has no steps; add at least one `[[step]]` table with `name` and `component`",
            ));
        }
        let level = WorkflowLevel {
            allow: allow.as_ref(),
            has_builder: builder.is_some(),
            base: path.parent().unwrap_or(Path::new(".")),
        };
        let mut seen = BTreeSet::new();
        let steps = raw
            .steps
            .iter()
            .map(|s| cx.step(s.get_ref(), &level, &mut seen))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Workflow {
            name,
            workspace,
            builder,
            order,
            allow,
            description,
            input_schema,
            steps,
        })
    }

    /// The run context of step `index` for `user` in run `run_id` (the same for every step
    /// of one run).
    pub fn context(&self, index: usize, user: &str, run_id: &str) -> RunContext {
        RunContext {
            run_id: run_id.to_owned(),
            workspace: self.workspace.clone(),
            workflow: self.name.clone(),
            user: user.to_owned(),
            builder: self.builder.clone(),
            order: self.order.clone(),
            workflow_allowlist: self.allow.clone(),
            step: self.steps[index].policy.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workflow, ManifestError> {
        Workflow::parse(text, Path::new("/w/workflow.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
name = "issue-digest"
workspace = "acme"
builder = "bob"
allow = ["GITHUB_TOKEN", "SLACK_TOKEN"]

[[step]]
name = "fetch"
component = "guests/github_issues.wasm"
allow = ["GITHUB_TOKEN"]
pins = { GITHUB_TOKEN = "builder" }

[[step]]
name = "post"
component = "/abs/slack_post.wasm"
integrations = ["http", "slack"]
pins = { SLACK_TOKEN = ["user", "workspace"] }
"#;

    #[test]
    fn accepts_a_full_manifest() {
        let w = parse(GOOD).unwrap();
        assert_eq!(
            (w.name.as_str(), w.workspace.as_str()),
            ("issue-digest", "acme")
        );
        assert_eq!(w.builder.as_deref(), Some("bob"));
        assert_eq!(w.order, DEFAULT_ORDER.to_vec());
        assert_eq!(w.steps.len(), 2);
        assert_eq!(
            w.steps[0].component,
            Path::new("/w/guests/github_issues.wasm")
        );
        assert_eq!(w.steps[1].component, Path::new("/abs/slack_post.wasm"));
        let k = |s: &str| CredentialKey::new(s).unwrap();
        assert_eq!(
            w.steps[0].policy.pins[&k("GITHUB_TOKEN")],
            vec![Tier::Builder]
        );
        assert_eq!(
            w.steps[1].policy.pins[&k("SLACK_TOKEN")],
            vec![Tier::UserWorkflow, Tier::User, Tier::Workspace]
        );
        assert_eq!(
            w.steps[1].policy.integrations,
            BTreeSet::from(["http".to_owned(), "slack".to_owned()])
        );
        assert_eq!(
            w.steps[0].policy.integrations,
            BTreeSet::from(["http".to_owned()])
        );
        let a = w.context(0, "alice", "run-1");
        let b = w.context(1, "alice", "run-1");
        assert_eq!(a.run_id, b.run_id);
        assert_eq!(
            (a.step.name.as_str(), b.step.name.as_str()),
            ("fetch", "post")
        );
        assert_eq!(a.workflow_allowlist, w.allow);
        // Step 2 has no allowlist: it declares the workflow's plus its pins.
        assert_eq!(
            w.steps[1].declared_keys(w.allow.as_ref()).unwrap(),
            BTreeSet::from([k("GITHUB_TOKEN"), k("SLACK_TOKEN")])
        );
    }

    #[test]
    fn keeps_a_description_and_an_input_schema_as_json() {
        let w = parse(
            "name = \"x\"\ndescription = \"Posts a digest\"\n[input]\ntype = \"object\"\nrequired = [\"repo\"]\nproperties.repo = { type = \"string\", maxLength = 100 }\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        )
        .unwrap();
        assert_eq!(w.description.as_deref(), Some("Posts a digest"));
        assert_eq!(
            w.input_schema.unwrap(),
            serde_json::json!({"type": "object", "required": ["repo"],
                "properties": {"repo": {"type": "string", "maxLength": 100}}})
        );
        let w = parse("name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n").unwrap();
        assert!(w.description.is_none() && w.input_schema.is_none());
        let e = err(
            "name = \"x\"\ndescription = \"a\\u0007b\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(e.contains(":2:15: description: at most 4096 bytes"), "{e}");
        let e = err(
            "name = \"x\"\n[input]\nsince = 1979-05-27\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(
            e.contains("[input]: a JSON Schema has no date-time values"),
            "{e}"
        );
        let e = err("name = \"x\"\ninput = 3\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n");
        assert!(e.contains("input"), "{e}");
        // Not a schema, or one no object satisfies: refused where it is written.
        let e = err(
            "name = \"x\"\n[input]\ntype = \"string\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(e.contains(":2:1: [input]: a run's input is a JSON object"), "{e}");
        let e = err(
            "name = \"x\"\n[input]\nproperties.n = { minimum = \"one\" }\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(e.contains("[input]: "), "{e}");
    }

    #[test]
    fn accepts_the_committed_example() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/workflows/issue-digest.toml");
        let w = Workflow::load(&path).unwrap();
        assert_eq!(w.steps.len(), 2);
        assert!(
            w.steps[0]
                .component
                .ends_with("target/wasm32-wasip2/release/github_issues.wasm")
        );
    }

    #[test]
    fn accepts_a_custom_order_and_defaults_the_workspace() {
        let w = parse(
            "name = \"x\"\norder = [\"workflow\", \"platform\"]\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        )
        .unwrap();
        assert_eq!(w.workspace, "default");
        assert_eq!(w.order, vec![Tier::Workflow, Tier::Platform]);
        assert!(w.steps[0].declared_keys(None).is_none());
    }

    #[test]
    fn rejects_unknown_fields_with_line_and_column() {
        let e = err(
            "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\nallowlist = [\"K\"]\n",
        );
        assert!(e.starts_with("/w/workflow.toml:5:1: "), "{e}");
        assert!(e.contains("unknown field `allowlist`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn rejects_syntax_errors_with_line() {
        let e = err("name = \"x\n");
        assert!(e.starts_with("/w/workflow.toml:1:"), "{e}");
    }

    #[test]
    fn rejects_unknown_tiers() {
        let e = err(
            "name = \"x\"\norder = [\"user\", \"team\"]\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(
            e.contains(":2:18:") && e.contains("unknown tier \"team\""),
            "{e}"
        );
        assert!(e.contains("user-workflow, user, workflow"), "{e}");
        let e = err(
            "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\npins = { K = \"mine\" }\n",
        );
        assert!(
            e.contains(":5:14:") && e.contains("unknown tier \"mine\" in the pin of K"),
            "{e}"
        );
    }

    #[test]
    fn rejects_invalid_keys() {
        let e = err(
            "name = \"x\"\nallow = [\"slack-token\"]\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(
            e.contains(":2:10:") && e.contains("invalid credential key \"slack-token\""),
            "{e}"
        );
    }

    #[test]
    fn rejects_no_steps_and_duplicate_steps() {
        assert!(err("name = \"x\"\n").contains("has no steps"));
        let e = err(
            "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[step]]\nname = \"a\"\ncomponent = \"b.wasm\"\n",
        );
        assert!(e.contains(":6:8:") && e.contains("already exists"), "{e}");
    }

    #[test]
    fn rejects_bad_scope_names() {
        let e = err("name = \"a/b\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n");
        assert!(e.contains(":1:8:") && e.contains("'/'"), "{e}");
        let e = err(
            "name = \"x\"\nworkspace = \"a:b\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(e.contains(":2:13:") && e.contains("workspace"), "{e}");
        let e = err(
            "name = \"x\"\nbuilder = \"b@c\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
        );
        assert!(e.contains(":2:11:") && e.contains("builder"), "{e}");
        let e = err("name = \"x\"\n[[step]]\nname = \"a@b\"\ncomponent = \"a.wasm\"\n");
        assert!(e.contains(":3:8:") && e.contains("step name"), "{e}");
    }

    #[test]
    fn rejects_a_pin_off_the_allowlist() {
        let e = err(
            "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\nallow = [\"A\"]\npins = { B = \"user\" }\n",
        );
        assert!(
            e.contains(":6:10:") && e.contains("pins B but B is not on its allowlist"),
            "{e}"
        );
        let e = err(
            "name = \"x\"\nallow = [\"A\"]\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\npins = { B = \"user\" }\n",
        );
        assert!(e.contains("pins B but B is not on its allowlist"), "{e}");
        let e = err(
            "name = \"x\"\nallow = [\"A\"]\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\nallow = [\"B\"]\n",
        );
        assert!(e.contains("workflow's `allow` does not"), "{e}");
    }

    #[test]
    fn rejects_a_builder_pin_without_a_builder() {
        let e = err(
            "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\npins = { K = \"builder\" }\n",
        );
        assert!(e.contains("declares no `builder`"), "{e}");
    }

    #[test]
    fn rejects_empty_integrations_and_bad_types() {
        assert!(
            err(
                "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\nintegrations = []\n"
            )
            .contains("`integrations` is empty")
        );
        assert!(err("name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"a.wasm\"\nintegrations = [\"Slack\"]\n").contains("invalid integration type"));
    }
}
