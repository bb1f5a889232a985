//! `workflow.toml`: a workflow's steps and its credential policy.
//!
//! ```toml
//! name = "issue-digest"        # workflow name (scopes workflow:W/F, user:U@W/F, builder:B@W/F)
//! workspace = "acme"           # optional, default "default"
//! builder = "bob"              # optional: whose keys the `builder` tier uses
//! order = ["user-workflow", "user", "workflow", "workspace", "builder", "platform"]  # optional
//! allow = ["GITHUB_TOKEN", "SLACK_TOKEN"]   # optional workflow allowlist
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

use latchkey_host::resolve::{DEFAULT_ORDER, RunContext, StepPolicy, Tier};
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::Scope;
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
    /// Steps, in order.
    pub steps: Vec<StepSpec>,
}

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
}

fn tier_names() -> String {
    DEFAULT_ORDER
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step names appear in reports and the audit trail; same rules as scope names.
fn step_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 200 {
        Some("is longer than 200 bytes")
    } else if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '@' | ':'))
    {
        Some("contains '/', '@', ':' or a control character")
    } else {
        None
    }
}

fn integration_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
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
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError {
            path: path.to_owned(),
            at: e.span().map(|s| line_col(text, s.start)),
            message: format!(
                "{}\n(the manifest format is described in examples/workflows/README.md)",
                e.to_string().trim_end()
            ),
        })?;

        let workspace = raw
            .workspace
            .as_ref()
            .map_or_else(|| "default".to_owned(), |w| w.get_ref().clone());
        let name = raw.name.get_ref().clone();
        if let Err(e) = (Scope::Workflow {
            workspace: workspace.clone(),
            workflow: name.clone(),
        })
        .validated()
        {
            let span = match &raw.workspace {
                Some(w) if e.reason.contains("workspace") => w.span(),
                _ => raw.name.span(),
            };
            return Err(cx.err(span, format!("{}; choose another name", e.reason)));
        }
        if let Some(b) = &raw.builder
            && let Err(e) = (Scope::User {
                user: b.get_ref().clone(),
            })
            .validated()
        {
            return Err(cx.err(
                b.span(),
                format!("builder: {}", e.reason.replace("user", "builder")),
            ));
        }
        let builder = raw.builder.as_ref().map(|b| b.get_ref().clone());

        let order = match &raw.order {
            None => DEFAULT_ORDER.to_vec(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(cx.err(
                        list.span(),
                        format!(
                            "`order` is empty; list the tiers to try, from: {}",
                            tier_names()
                        ),
                    ));
                }
                let mut order = Vec::new();
                for s in list.get_ref() {
                    let t = cx.tier(s.get_ref(), s.span())?;
                    if order.contains(&t) {
                        return Err(cx.err(
                            s.span(),
                            format!("tier {t} appears twice in `order`; remove one"),
                        ));
                    }
                    order.push(t);
                }
                order
            }
        };
        let allow = match &raw.allow {
            Some(list) => Some(cx.allowlist(list, "workflow")?),
            None => None,
        };

        if raw.steps.is_empty() {
            return Err(ManifestError {
                path: path.to_owned(),
                at: None,
                message: "the workflow has no steps; add at least one `[[step]]` table with `name` and `component`".into(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut seen = BTreeSet::new();
        let mut steps = Vec::new();
        for raw_step in &raw.steps {
            let s = raw_step.get_ref();
            let sname = s.name.get_ref().clone();
            if let Some(problem) = step_name_problem(&sname) {
                return Err(cx.err(
                    s.name.span(),
                    format!("the step name {problem}; choose another"),
                ));
            }
            if !seen.insert(sname.clone()) {
                return Err(cx.err(
                    s.name.span(),
                    format!("a step named {sname:?} already exists; step names must be unique"),
                ));
            }
            if s.component.get_ref().is_empty() {
                return Err(cx.err(
                    s.component.span(),
                    "`component` is empty; give the path of a .wasm file, relative to this manifest",
                ));
            }
            let integrations: BTreeSet<String> = match &s.integrations {
                None => BTreeSet::from(["http".to_owned()]),
                Some(list) => {
                    if list.get_ref().is_empty() {
                        return Err(cx.err(
                            list.span(),
                            "`integrations` is empty, so the step could use no secret; list its types (e.g. [\"http\", \"slack\"]) or remove the field for the default [\"http\"]",
                        ));
                    }
                    let mut set = BTreeSet::new();
                    for i in list.get_ref() {
                        if !integration_ok(i.get_ref()) {
                            return Err(cx.err(
                                i.span(),
                                format!(
                                    "invalid integration type {:?}: use lowercase letters, digits, '-' or '_' (e.g. http, slack, sendgrid)",
                                    i.get_ref()
                                ),
                            ));
                        }
                        set.insert(i.get_ref().clone());
                    }
                    set
                }
            };
            let step_allow = match &s.allow {
                Some(list) => Some(cx.allowlist(list, &format!("step {sname:?}"))?),
                None => None,
            };
            if let (Some(step_list), Some(wf_list)) = (&s.allow, &allow) {
                for k in step_list {
                    if !wf_list.contains(&cx.key(k)?) {
                        return Err(cx.err(
                            k.span(),
                            format!(
                                "step {sname:?} allows {} but the workflow's `allow` does not, so it could never resolve; add it to the workflow's `allow` or remove it here",
                                k.get_ref()
                            ),
                        ));
                    }
                }
            }
            let mut pins = BTreeMap::new();
            for (k, v) in &s.pins {
                let key = cx.key(k)?;
                let on_list = step_allow
                    .as_ref()
                    .or(allow.as_ref())
                    .is_none_or(|l| l.contains(&key));
                if !on_list {
                    return Err(cx.err(
                        k.span(),
                        format!(
                            "step {sname:?} pins {key} but {key} is not on its allowlist, so it could never resolve; add it to `allow`"
                        ),
                    ));
                }
                let names: Vec<&str> = match v.get_ref() {
                    PinSpec::One(one) => vec![one.as_str()],
                    PinSpec::Many(many) => many.iter().map(String::as_str).collect(),
                };
                if names.is_empty() {
                    return Err(cx.err(v.span(), format!("the pin of {key} is empty; name a tier")));
                }
                let mut tiers: Vec<Tier> = Vec::new();
                for n in names {
                    let parsed = Tier::parse_pin(n).ok_or_else(|| {
                        cx.err(
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
                if tiers == [Tier::Builder] && builder.is_none() {
                    return Err(cx.err(
                        v.span(),
                        format!("{key} is pinned to the builder tier but the workflow declares no `builder`; add `builder = \"NAME\"`"),
                    ));
                }
                pins.insert(key, tiers);
            }
            steps.push(StepSpec {
                component: base.join(s.component.get_ref()),
                policy: StepPolicy {
                    name: sname,
                    integrations,
                    allowlist: step_allow,
                    pins,
                },
            });
        }
        Ok(Workflow {
            name,
            workspace,
            builder,
            order,
            allow,
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
