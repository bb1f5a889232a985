//! The wire types of the `/v1` API, shared by the server and its clients (the `latchkey`
//! command with `--server`). Requests refuse unknown fields. No type here holds a secret
//! value except the two request bodies that carry one in, and neither implements `Debug`.

use latchkey_host::AuditRecord;
use latchkey_host::Quota;
use latchkey_host::SecretMeta;
use latchkey_host::TokenMeta;
use latchkey_host::{LastUse, Role};
use serde::{Deserialize, Serialize};

/// Where a secret's value may be sent (the flags of `latchkey secret set`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingBody {
    /// Host patterns: `api.example.com`, `*.example.com`, an IP literal, optional `:PORT`.
    pub hosts: Vec<String>,
    /// Locations: `header:NAME`, `query:NAME`, `basic-auth`, `body-json:FIELD`, …, as
    /// answers name them (`binding.locations`). `inject`, this field's earlier name in
    /// requests, is still accepted for it.
    #[serde(alias = "inject")]
    pub locations: Vec<String>,
    /// Allow plain http://.
    #[serde(default)]
    pub allow_http: bool,
    /// HTTP methods; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// URL path prefixes; empty: any.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// Allow non-public addresses (never cloud metadata).
    #[serde(default)]
    pub allow_internal: bool,
    /// What an `aws-sigv4` or `jwt-*` credential signs for or asserts:
    /// `{"aws": {"region", "service"}}` or `{"jwt": {"issuer", "subject"?, "audience"?,
    /// "scope"?, "ttl_secs", "key_id"?}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<latchkey_host::SignerParams>,
}

/// A value in a request: sealed to the server's public key (base64), or plain (only
/// over TLS or loopback). Exactly one.
#[derive(Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueBody {
    /// The value as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value sealed to `GET /v1/public-key`, base64 (standard alphabet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_value: Option<String>,
}

/// `PUT /v1/secrets/{key}?scope=…`: create or replace value and binding.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value.
    #[serde(flatten)]
    pub value: ValueBody,
    /// Where it may be sent.
    pub binding: BindingBody,
    /// Integration type (default `http`).
    #[serde(default = "default_integration")]
    pub integration: String,
    /// Store a value that looks easy to guess.
    #[serde(default)]
    pub allow_weak_value: bool,
    /// Requests per minute and per day that may carry the value:
    /// `{"per_minute": N, "per_day": N}`, either optional. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// `static` (default), `hmac-sha256` (a signing key: only signatures are sent) or
    /// `oauth2` (the value is the client as JSON; the host injects access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For `oauth2`: the token endpoint, grant and scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthBody>,
}

/// The token endpoint of an `oauth2` secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthBody {
    /// The token endpoint: https (plain http only to a loopback address), named `url` as
    /// answers name it (`oauth.url`). `token_url`, this field's earlier name in requests,
    /// is still accepted for it.
    #[serde(alias = "token_url")]
    pub url: String,
    /// `refresh-token` (default) or `client-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The `scope` parameter sent to the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn default_integration() -> String {
    "http".to_owned()
}

/// `POST /v1/secrets/{key}/rotate?scope=…`: a new value, same binding.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new value.
    #[serde(flatten)]
    pub value: ValueBody,
    /// Store a value that looks easy to guess.
    #[serde(default)]
    pub allow_weak_value: bool,
    /// Replaces the quota (`{}` removes it); absent: the quota is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// A secret's metadata (never its value), with its last use.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretView {
    /// Scope, key, binding, version, authors.
    #[serde(flatten)]
    pub meta: SecretMeta,
    /// When it was last injected, and by which run.
    #[serde(default)]
    pub last_used: Option<LastUse>,
}

/// One entry of `GET /v1/secrets`: metadata and last use, or why a record could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ListedSecret {
    /// A readable record.
    Ok(Box<SecretView>),
    /// A damaged record.
    Damaged(DamagedSecret),
}

/// An entry of `GET /v1/secrets` whose record could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DamagedSecret {
    /// Why.
    pub error: String,
}

/// `GET /v1/public-key`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKey {
    /// `x25519-sealed-box` (libsodium `crypto_box_seal`).
    pub algorithm: String,
    /// The key, base64 (standard alphabet).
    pub public_key: String,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The principal's name (user-name rules).
    pub name: String,
    /// `admin`, `member` or `runner`.
    pub role: Role,
    /// Seconds until the token stops authenticating; absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the token, shown this once.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The bearer token.
    pub token: String,
    /// What is stored about it.
    pub meta: TokenMeta,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The principal's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// The answer to `DELETE /v1/members/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberRemoved {
    /// The member.
    pub user: String,
    /// The secrets deleted (every one they created).
    pub deleted: Vec<SecretMeta>,
}

/// The answer to `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecords {
    /// Matching records, oldest first.
    pub records: Vec<AuditRecord>,
    /// Records that could not be read.
    pub unreadable: usize,
}

/// A registered component.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentView {
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// The name it was registered under, if any.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of its input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<serde_json::Value>,
    /// Who registered it.
    #[serde(default)]
    pub registered_by: String,
    /// Unix milliseconds.
    #[serde(default)]
    pub registered_at_ms: u64,
}

impl From<latchkey_host::ComponentInfo> for ComponentView {
    fn from(c: latchkey_host::ComponentInfo) -> Self {
        ComponentView {
            digest: c.digest,
            name: c.name,
            size: c.size,
            description: c.description,
            input_schema: c.input_schema,
            registered_by: c.registered_by,
            registered_at_ms: c.registered_at_ms,
        }
    }
}

impl From<&latchkey_host::RegisteredWorkflow> for WorkflowView {
    fn from(w: &latchkey_host::RegisteredWorkflow) -> Self {
        WorkflowView {
            name: w.workflow.name.clone(),
            workspace: w.workflow.workspace.clone(),
            steps: w
                .workflow
                .steps
                .iter()
                .zip(&w.info.digests)
                .map(|(s, d)| WorkflowStepView {
                    name: s.policy.name.clone(),
                    component: d.clone(),
                    keys: s
                        .declared_keys(w.workflow.allow.as_ref())
                        .map(|keys| keys.iter().map(|k| k.to_string()).collect()),
                })
                .collect(),
        }
    }
}

/// A registered workflow.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowView {
    /// Its name (the manifest's `name`).
    pub name: String,
    /// Its workspace.
    pub workspace: String,
    /// Its steps and the component each runs.
    pub steps: Vec<WorkflowStepView>,
}

/// One step of a registered workflow.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowStepView {
    /// Step name.
    pub name: String,
    /// The component's digest.
    pub component: String,
    /// The keys its manifest names (allowlist and pins); `None` when it declares none.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// `POST /v1/runs`: run a registered component (one step) or workflow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// A registered component, by name or `sha256:` digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// A registered workflow, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Input of the (first) step. Default `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// Single step: its workspace (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Single step: its workflow name (default: the component's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    /// Single step: the builder (tier 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// Single step: integration types (default `["http"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrations: Vec<String>,
    /// Single step: only these keys may resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_keys: Vec<String>,
    /// Answer when the run has ended rather than at once.
    #[serde(default)]
    pub wait: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The host running it stopped before it ended (another host found its lease
    /// expired).
    Lost,
}

impl From<latchkey_host::RunStatus> for RunStatus {
    fn from(s: latchkey_host::RunStatus) -> Self {
        match s {
            latchkey_host::RunStatus::Queued => RunStatus::Queued,
            latchkey_host::RunStatus::Running => RunStatus::Running,
            latchkey_host::RunStatus::Succeeded => RunStatus::Succeeded,
            latchkey_host::RunStatus::Failed => RunStatus::Failed,
            latchkey_host::RunStatus::Lost => RunStatus::Lost,
        }
    }
}

/// A run: status, output, and what each step did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    /// The run id (as in the audit trail).
    pub id: String,
    /// `component` or `workflow`.
    pub kind: String,
    /// What runs: the component or workflow name.
    pub target: String,
    /// Who runs it (the user tiers resolve against this name).
    pub user: String,
    /// Status.
    pub status: RunStatus,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// Unix milliseconds, once ended.
    pub finished_at_ms: Option<u64>,
    /// The last step's output (JSON if it parses, else a string), on success. A run read
    /// back keeps its first `--keep-run-output-kib` (see `output_truncated`); the answer
    /// to a waited run has all of it.
    pub output: Option<serde_json::Value>,
    /// Whether `output` was cut at the kept size (it is then a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The steps that ran.
    pub steps: Vec<StepView>,
    /// Steps not run because an earlier one failed.
    pub not_run: Vec<String>,
}

impl From<&latchkey_host::RunRecord> for RunView {
    fn from(r: &latchkey_host::RunRecord) -> Self {
        RunView {
            id: r.id.clone(),
            kind: r.kind.name().to_owned(),
            target: r.target.clone(),
            user: r.user.clone(),
            status: r.status.into(),
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            output: r.output.as_ref().map(|o| {
                serde_json::from_str(&o.0)
                    .unwrap_or_else(|_| serde_json::Value::String(o.0.clone()))
            }),
            output_truncated: r.output_truncated,
            error: r.error.clone(),
            steps: r
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.name.clone(),
                    status: s.status.into(),
                    duration_ms: s.duration_ms,
                    fetches: s.fetches,
                    credentials: s
                        .credentials
                        .iter()
                        .map(|c| CredentialView {
                            key: c.key.clone(),
                            tier: c.tier.clone(),
                            scope: c.scope.clone(),
                        })
                        .collect(),
                    refusals: s
                        .refusals
                        .iter()
                        .map(|f| RefusalView {
                            key: f.key.clone(),
                            reason: f.reason.clone(),
                        })
                        .collect(),
                    logs: s
                        .logs
                        .iter()
                        .map(|l| LogView {
                            level: l.level.clone(),
                            message: l.message.clone(),
                        })
                        .collect(),
                    error: s.error.clone(),
                })
                .collect(),
            not_run: r.not_run.clone(),
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    /// Step name.
    pub name: String,
    /// `succeeded` or `failed`.
    pub status: RunStatus,
    /// Wall-clock milliseconds.
    pub duration_ms: f64,
    /// Fetches made (successful steps).
    pub fetches: u32,
    /// Credentials resolved: key, tier and scope (never values).
    pub credentials: Vec<CredentialView>,
    /// Credentials refused, and why.
    pub refusals: Vec<RefusalView>,
    /// The step's log lines (scrubbed).
    pub logs: Vec<LogView>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A credential a step resolved.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// Key.
    pub key: String,
    /// Tier.
    pub tier: String,
    /// Scope.
    pub scope: String,
}

/// A credential refused to a step.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefusalView {
    /// Key.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// A log line of a step.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogView {
    /// Level.
    pub level: String,
    /// The (scrubbed) message.
    pub message: String,
}

/// `latchkey check` through the API: per step, whether its component loads and where
/// each declared key would come from.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckView {
    /// The user checked for (the caller).
    pub user: String,
    /// Components that do not load plus keys that do not resolve.
    pub problems: usize,
    /// Per step.
    pub steps: Vec<CheckStepView>,
}

impl CheckView {
    /// The view of `report`, each component's load error in the words `chain` gives it (a
    /// front end's own way of joining an error's causes).
    pub fn of(
        report: &latchkey_host::CheckReport,
        chain: impl Fn(&latchkey_host::Error) -> String,
    ) -> Self {
        CheckView {
            user: report.user.clone(),
            problems: report.problems(),
            steps: report
                .steps
                .iter()
                .map(|s| CheckStepView {
                    name: s.name.clone(),
                    component: match &s.load {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => chain(e),
                    },
                    keys: s.keys.as_ref().map(|keys| {
                        keys.iter()
                            .map(|k| CheckKeyView {
                                key: k.key.to_string(),
                                resolution: match &k.resolution {
                                    Ok(r) => Ok(format!(
                                        "tier {} (scope {}, integration {}, version {})",
                                        r.tier, r.meta.scope, r.meta.integration, r.meta.version
                                    )),
                                    Err(e) => Err(e.to_string()),
                                },
                            })
                            .collect()
                    }),
                })
                .collect(),
        }
    }
}

/// One step of a check.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckStepView {
    /// Step name.
    pub name: String,
    /// `ok` or why the component does not load.
    pub component: String,
    /// Declared keys; `None` when the step declares none (no allowlist).
    pub keys: Option<Vec<CheckKeyView>>,
}

/// One declared key of a check.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckKeyView {
    /// Key.
    pub key: String,
    /// The tier and scope it resolves from, or why it is missing.
    #[schema(value_type = KeyResolution)]
    pub resolution: Result<String, String>,
}

/// The schema of [`CheckKeyView::resolution`], a `Result` as serde writes one:
/// `{"Ok": "tier … (scope …, integration …, version …)"}` or `{"Err": "why it is missing"}`.
/// Only its schema is used, in the OpenAPI document.
#[derive(utoipa::ToSchema)]
pub enum KeyResolution {
    /// The tier and scope it resolves from.
    Ok(String),
    /// Why it is missing.
    Err(String),
}

/// The body of `POST /v1/components`: the component's bytes (`application/wasm`). Only its
/// schema is used, in the OpenAPI document: a string of bytes, which generators keep as a
/// file upload (an array of integers, utoipa's schema of `Vec<u8>`, they drop or mistype).
pub struct ComponentUpload;

impl utoipa::PartialSchema for ComponentUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        upload_schema(
            "application/wasm",
            "A WebAssembly component (wasm32-wasip2).",
        )
    }
}

impl utoipa::ToSchema for ComponentUpload {}

/// The body of `PUT /v1/workflows/{name}`: the manifest (`application/toml`), as
/// [`ComponentUpload`] is the component's.
pub struct ManifestUpload;

impl utoipa::PartialSchema for ManifestUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        upload_schema(
            "application/toml",
            "A workflow manifest, UTF-8 TOML; its `name` is the path's.",
        )
    }
}

impl utoipa::ToSchema for ManifestUpload {}

fn upload_schema(
    media_type: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .content_media_type(media_type)
        .description(Some(description))
        .into()
}

/// Every error response: a stable code and a message naming the problem.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `bad-request`, `unauthorized`, `forbidden`, `not-found`, `conflict`,
    /// `payload-too-large`, `unsupported-media-type`, `too-many-requests`, `unavailable`,
    /// `internal`.
    pub error: String,
    /// What was wrong.
    pub message: String,
}
