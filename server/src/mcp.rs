//! The Model Context Protocol over the façade, through the official Rust SDK (`rmcp`):
//! `/mcp` on `latchkey serve` (Streamable HTTP, the caller from the same bearer tokens as
//! `/v1`) and `latchkey mcp` (stdio, one principal for the whole session).
//!
//! - **Tools**: every registered workflow and named component the caller may run. A call
//!   is a run exactly as `POST /v1/runs` starts one (the same façade method, as the caller,
//!   within the same limits); its output, scrubbed by the host, is the tool's result, and
//!   a refusal or a failure is a tool error in the guest's words.
//! - **Resources** (read-only): the caller's recent runs, one run by id, and for roles
//!   that may read metadata the secrets' metadata (never a value).
//! - `notifications/tools/list_changed` after each registration made through this host.
//!
//! Like the routes, this module decides no policy: every question goes to the façade.

use crate::api::{ListedSecret, RunView};
use crate::error::ApiError;
use crate::state::AppState;
use latchkey_host::{Action, Latchkey, Principal, RunRecord, RunSpec, RunStatus, RunTarget};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The resource of the caller's recent runs.
const RUNS_URI: &str = "latchkey://runs";
/// One run: `latchkey://runs/{id}`.
const RUN_URI_PREFIX: &str = "latchkey://runs/";
/// The secrets' metadata (members and admins).
const SECRETS_URI: &str = "latchkey://secrets";

/// Who a request acts as.
enum Caller {
    /// `latchkey mcp`: the principal the command was started as.
    Fixed(Principal),
    /// `/mcp`: the principal of each request's own bearer token, which [`authenticate`]
    /// put in the request's extensions before the SDK saw it.
    Bearer(Arc<AppState>),
}

/// One MCP session's server: the SDK makes one per session (HTTP) or per process (stdio).
pub struct McpServer {
    latchkey: Arc<Latchkey>,
    caller: Caller,
    /// The largest tool input, as JSON bytes: the server's JSON body limit, as for
    /// `POST /v1/runs`.
    max_input_bytes: usize,
    /// Dropped with the session, which ends its `list_changed` notifier.
    alive: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    _alive: tokio::sync::oneshot::Sender<()>,
}

impl McpServer {
    fn new(latchkey: Arc<Latchkey>, caller: Caller, max_input_bytes: usize) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        McpServer {
            latchkey,
            caller,
            max_input_bytes,
            alive: Mutex::new(Some(rx)),
            _alive: tx,
        }
    }

    /// A session of `/mcp` on the server over `state`.
    pub(crate) fn http(state: Arc<AppState>) -> Self {
        let (latchkey, max) = (state.latchkey.clone(), state.limits.max_json_bytes);
        Self::new(latchkey, Caller::Bearer(state), max)
    }

    /// A session acting as `principal` throughout (`latchkey mcp`), taking tool inputs of
    /// at most `max_input_bytes` of JSON.
    pub fn local(latchkey: Arc<Latchkey>, principal: Principal, max_input_bytes: usize) -> Self {
        Self::new(latchkey, Caller::Fixed(principal), max_input_bytes)
    }

    fn principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, McpError> {
        match &self.caller {
            Caller::Fixed(p) => Ok(p.clone()),
            Caller::Bearer(_) => ctx
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned()
                // Unreachable behind `authenticate`; refused rather than run as anyone.
                .ok_or_else(|| McpError::invalid_request("no authenticated caller", None)),
        }
    }

    /// A tool error when `input` is over the server's JSON limit.
    fn too_large(&self, input: &str) -> Option<CallToolResponse> {
        (input.len() > self.max_input_bytes).then(|| {
            tool_error(format!(
                "the input is {} bytes of JSON; this server takes at most {} bytes",
                input.len(),
                self.max_input_bytes
            ))
        })
    }

    fn draining(&self) -> bool {
        match &self.caller {
            Caller::Bearer(state) => state.draining.load(Ordering::SeqCst),
            Caller::Fixed(_) => false,
        }
    }

    /// The tools `by` may run, read from the store off the async workers.
    async fn catalog(&self, by: &Principal) -> Result<Vec<Entry>, McpError> {
        let (latchkey, by) = (self.latchkey.clone(), by.clone());
        tokio::task::spawn_blocking(move || catalog(&latchkey, &by))
            .await
            .map_err(|e| McpError::internal_error(format!("listing the tools failed: {e}"), None))?
            .map_err(refusal)
    }

    /// Sends `tools/list_changed` to `peer` after each registration, until the session ends.
    fn notify_registrations(&self, send: impl Fn() -> NotifyFuture + Send + 'static) {
        let Some(mut alive) = self.alive.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut changes = self.latchkey.registrations();
        changes.mark_unchanged();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut alive => return,
                    changed = changes.changed() => {
                        if changed.is_err() || !send().await {
                            return;
                        }
                    }
                }
            }
        });
    }
}

type NotifyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// A tool: a registration the caller may run, or the script tool.
struct Entry {
    tool: String,
    description: String,
    schema: Option<serde_json::Value>,
}

/// What calling a tool does.
enum Target {
    /// Runs a registered workflow or component.
    Run(RunTarget),
    /// Builds and runs an agent-written script (`run_script`).
    Script,
}

/// The script tool's name, unless a registration already has it (then
/// `latchkey.run_script`).
const SCRIPT_TOOL: &str = "run_script";

/// The tools `by` may run: every registered workflow under its name, then every named
/// component under its name, or `component.NAME` when a workflow has that name. Calls look
/// tools up in the same list, so a name always means what `tools/list` said.
fn catalog(latchkey: &Latchkey, by: &Principal) -> Result<Vec<Entry>, latchkey_host::Error> {
    let workflows = latchkey.workflows(by)?;
    let components = latchkey.components(by)?;
    let mut taken = HashSet::new();
    let mut out = Vec::new();
    for w in workflows {
        let name = w.info.name.clone();
        taken.insert(name.clone());
        let steps = w.workflow.steps.len();
        out.push(Entry {
            tool: name.clone(),
            description: w.workflow.description.clone().unwrap_or_else(|| {
                format!("Runs the registered workflow {name} ({steps} step(s)) in Latchkey's sandbox, with keys it can use but not read.")
            }),
            schema: w.workflow.input_schema.clone(),
        });
    }
    // Components a workflow's name hides come first as component.NAME, so that a
    // component literally named `component.NAME` never takes it (whatever the order):
    // the rule `target_of` follows when it resolves one name.
    let workflow_names = taken.clone();
    let (hidden, plain): (Vec<_>, Vec<_>) = components
        .into_iter()
        .filter(|c| c.name.is_some())
        .partition(|c| c.name.as_ref().is_some_and(|n| workflow_names.contains(n)));
    for c in hidden.into_iter().chain(plain) {
        let Some(name) = c.name.clone() else { continue };
        let tool = if workflow_names.contains(&name) {
            format!("component.{name}")
        } else {
            name.clone()
        };
        if !taken.insert(tool.clone()) {
            tracing::warn!(component = %name, tool = %tool, "a component's tool name is taken; it is not listed");
            continue;
        }
        out.push(Entry {
            tool,
            description: c.description.clone().unwrap_or_else(|| {
                format!("Runs the registered component {name} ({}) in Latchkey's sandbox, with keys it can use but not read.", c.digest)
            }),
            schema: c.input_schema.clone(),
        });
    }
    let scripts = latchkey.script_policy(by)?;
    if scripts.enabled {
        match script_tool_names().find(|n| !taken.contains(n)) {
            Some(tool) => out.push(script_entry(tool, &scripts.max_keys)),
            None => tracing::warn!("both names of the script tool are taken; it is not listed"),
        }
    }
    Ok(out)
}

/// The script tool's names, in order of preference: the first no registration has.
fn script_tool_names() -> impl Iterator<Item = String> {
    [SCRIPT_TOOL.to_owned(), format!("latchkey.{SCRIPT_TOOL}")].into_iter()
}

/// What calling `tool` does for `by`: what [`catalog`] lists under that name, found by
/// reading the few records the name could be instead of listing every registration (a call
/// costs the same with a thousand registrations as with one).
fn target_of(
    latchkey: &Latchkey,
    by: &Principal,
    tool: &str,
) -> Result<Option<Target>, latchkey_host::Error> {
    if let Some(t) = registration_of(latchkey, by, tool)? {
        return Ok(Some(Target::Run(t)));
    }
    if script_tool_names().any(|n| n == tool) && latchkey.script_policy(by)?.enabled {
        for name in script_tool_names() {
            if registration_of(latchkey, by, &name)?.is_none() {
                return Ok((name == tool).then_some(Target::Script));
            }
        }
    }
    Ok(None)
}

/// The registration [`catalog`] lists as `tool`: a workflow of that name; else, as
/// `component.NAME`, the component NAME whose name a workflow has; else the component.
fn registration_of(
    latchkey: &Latchkey,
    by: &Principal,
    tool: &str,
) -> Result<Option<RunTarget>, latchkey_host::Error> {
    let registered = |t: RunTarget| latchkey.is_registered(by, &t).map(|yes| yes.then_some(t));
    if let Some(t) = registered(RunTarget::Workflow(tool.to_owned()))? {
        return Ok(Some(t));
    }
    if let Some(name) = tool.strip_prefix("component.")
        && latchkey.is_registered(by, &RunTarget::Workflow(name.to_owned()))?
        && let Some(t) = registered(RunTarget::Component(name.to_owned()))?
    {
        return Ok(Some(t));
    }
    registered(RunTarget::Component(tool.to_owned()))
}

/// The script tool: what it does, and the keys it may be asked to use.
fn script_entry(tool: String, max_keys: &[String]) -> Entry {
    let keys = if max_keys.is_empty() {
        "none: scripts run keyless".to_owned()
    } else {
        max_keys.join(", ")
    };
    let description = format!(
        "Builds and runs a step you write, in Latchkey's WebAssembly sandbox, as you. `source` is a \
         TypeScript or JavaScript module using the latchkey-sdk package, e.g. \
         `import {{ step, credential, fetch }} from 'latchkey-sdk'; export const run = step(async (input) => \
         {{ const r = await fetch('https://slack.com/api/chat.postMessage', {{ method: 'POST', headers: \
         {{ authorization: ['Bearer ', credential('SLACK_TOKEN')] }}, body: JSON.stringify(input) }}); \
         return {{ status: r.status, body: await r.json() }}; }});`. Only latchkey-sdk may be imported; there is \
         no file system, environment or network but the SDK's fetch. `keys` are the credentials it \
         may use (allowed: {keys}); the host puts each into requests to where it is bound and \
         scrubs it from responses: no script can read, return, log or send a key elsewhere. \
         `input` is the step's input. The first call with a source builds it (seconds); the same \
         source again runs at once."
    );
    let key_items = if max_keys.is_empty() {
        serde_json::json!({"type": "string"})
    } else {
        serde_json::json!({"type": "string", "enum": max_keys})
    };
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "source": {"type": "string", "description": "the step's TypeScript or JavaScript source, exporting `run`"},
            "keys": {"type": "array", "items": key_items, "uniqueItems": true, "description": "the credentials the step may use"},
            "input": {"description": "the step's input (JSON); default {}"},
        },
        "required": ["source"],
        "additionalProperties": false,
    });
    Entry {
        tool,
        description,
        schema: Some(schema),
    }
}

/// A `run_script` call's arguments, refused with what is wrong.
fn script_spec(
    arguments: serde_json::Map<String, serde_json::Value>,
) -> Result<latchkey_host::ScriptSpec, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        source: String,
        #[serde(default)]
        keys: Vec<String>,
        #[serde(default)]
        input: Option<serde_json::Value>,
    }
    let args: Args = serde_json::from_value(serde_json::Value::Object(arguments))
        .map_err(|e| format!("{SCRIPT_TOOL}'s arguments: {e} (it takes source, keys and input)"))?;
    Ok(latchkey_host::ScriptSpec {
        source: args.source,
        keys: args.keys,
        input: args
            .input
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
            .to_string(),
    })
}

impl Entry {
    fn tool(&self) -> Tool {
        // No schema: any JSON object. A declared one admits objects (checked when it was
        // declared); MCP wants its type said, so a schema that leaves it out gets it.
        let mut schema = match &self.schema {
            Some(serde_json::Value::Object(o)) => o.clone(),
            _ => serde_json::Map::new(),
        };
        schema
            .entry("type")
            .or_insert_with(|| serde_json::Value::from("object"));
        Tool::new(
            self.tool.clone(),
            self.description.clone(),
            Arc::new(schema),
        )
    }
}

/// A façade error as the API words it (a 500's details stay in the log).
fn message(e: latchkey_host::Error) -> String {
    ApiError::from(e).message
}

/// A façade refusal of a protocol request (listing, reading).
fn refusal(e: latchkey_host::Error) -> McpError {
    McpError::invalid_request(message(e), None)
}

fn tool_error(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

/// A finished run as a tool result: its output, or its error in the guest's words with
/// each refusal, and the run's id to look it up by.
fn tool_result(record: &RunRecord) -> CallToolResponse {
    if record.status == RunStatus::Succeeded {
        let output = record.output.as_ref().map_or("", |o| o.0.as_str());
        let mut result = CallToolResult::success(vec![ContentBlock::text(output)]);
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(output) {
            result.structured_content = Some(v);
        }
        return result.into();
    }
    let mut text = format!(
        "run {} failed: {}",
        record.id,
        record.error.as_deref().unwrap_or("no error was recorded")
    );
    for step in &record.steps {
        for r in &step.refusals {
            text.push_str(&format!(
                "\nrefused {} in step {}: {}",
                r.key, step.name, r.reason
            ));
        }
    }
    tool_error(text)
}

fn json_contents(uri: &str, value: &impl serde::Serialize) -> Result<ReadResourceResult, McpError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| McpError::internal_error(format!("rendering {uri}: {e}"), None))?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type("application/json"),
    ]))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("latchkey", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Each tool runs a registered Latchkey workflow or component in a WebAssembly sandbox, as you. \
             Steps use API keys through the host and never see them: no tool result contains a key. \
             Resources: latchkey://runs (your recent runs), latchkey://runs/{id}, latchkey://secrets (metadata, members and admins).",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let by = self.principal(&ctx)?;
        let tools = self.catalog(&by).await?.iter().map(Entry::tool).collect();
        // Registrations change it: never to be cached.
        Ok(ListToolsResult::with_all_items(tools).with_ttl_ms(0))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let by = self.principal(&ctx)?;
        let target = {
            let (latchkey, who, tool) = (self.latchkey.clone(), by.clone(), request.name.clone());
            tokio::task::spawn_blocking(move || target_of(&latchkey, &who, &tool))
                .await
                .map_err(|e| {
                    McpError::internal_error(format!("finding the tool failed: {e}"), None)
                })?
                .map_err(refusal)?
        }
        .ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "no tool {:?} (tools/list names those you may run)",
                    request.name.chars().take(100).collect::<String>()
                ),
                None,
            )
        })?;
        if self.draining() {
            return Ok(tool_error(
                "the server is shutting down; call the tool again on another host",
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        let target = match target {
            Target::Run(target) => target,
            Target::Script => {
                let spec = match script_spec(arguments) {
                    Ok(spec) => spec,
                    Err(e) => return Ok(tool_error(e)),
                };
                if let Some(refused) = self.too_large(&spec.input) {
                    return Ok(refused);
                }
                return match self.latchkey.run_script(&by, spec).await {
                    Ok(record) => Ok(tool_result(&record)),
                    Err(e) => Ok(tool_error(message(e))),
                };
            }
        };
        let input = serde_json::Value::Object(arguments).to_string();
        if let Some(refused) = self.too_large(&input) {
            return Ok(refused);
        }
        let spec = RunSpec {
            target,
            input,
            choices: Default::default(),
        };
        match self.latchkey.run(&by, spec).await {
            Ok(record) => Ok(tool_result(&record)),
            Err(e) => Ok(tool_error(message(e))),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let by = self.principal(&ctx)?;
        let mut list = vec![
            Resource::new(RUNS_URI, "runs")
                .with_description("Your most recent runs (an admin's: everyone's), newest first")
                .with_mime_type("application/json"),
        ];
        if self.latchkey.authorize(&by, Action::ReadMetadata).is_ok() {
            list.push(
                Resource::new(SECRETS_URI, "secrets")
                    .with_description("Every secret's metadata and last use: never a value")
                    .with_mime_type("application/json"),
            );
        }
        Ok(ListResourcesResult::with_all_items(list).with_ttl_ms(0))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("latchkey://runs/{id}", "run")
                .with_description(
                    "One of your runs: status, output, each step's credentials, refusals and logs",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let by = self.principal(&ctx)?;
        let uri = request.uri;
        let latchkey = self.latchkey.clone();
        let read = uri.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<_, McpError> {
            if read == RUNS_URI {
                let runs = latchkey.runs(&by, None, 100).map_err(refusal)?;
                json_contents(&read, &runs.iter().map(RunView::from).collect::<Vec<_>>())
            } else if let Some(id) = read.strip_prefix(RUN_URI_PREFIX) {
                let record = latchkey
                    .run_record(&by, id)
                    .map_err(|e| McpError::resource_not_found(message(e), None))?;
                json_contents(&read, &RunView::from(&record))
            } else if read == SECRETS_URI {
                let listed: Vec<ListedSecret> =
                    crate::routes::secrets::listed(&latchkey, &by, None).map_err(refusal)?;
                json_contents(&read, &listed)
            } else {
                Err(McpError::resource_not_found(
                    format!(
                        "no resource {:?} (resources/list names them)",
                        read.chars().take(100).collect::<String>()
                    ),
                    None,
                ))
            }
        })
        .await
        .map_err(|e| McpError::internal_error(format!("reading {uri} failed: {e}"), None))??;
        Ok(result.into())
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        let peer = ctx.peer;
        self.notify_registrations(move || {
            let peer = peer.clone();
            Box::pin(async move { peer.notify_tool_list_changed().await.is_ok() })
        });
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        (requested.tools_list_changed == Some(true))
            .then(|| SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.latchkey.registrations();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() || ctx.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Serves MCP over this process's stdin and stdout until the client closes them.
pub async fn serve_stdio(server: McpServer) -> Result<(), std::io::Error> {
    use rmcp::ServiceExt;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// `/mcp`: the SDK's Streamable HTTP service, one [`McpServer`] per session, behind
/// [`authenticate`]. Its body limit leaves room for the JSON-RPC envelope around a tool
/// input of the server's JSON limit, which the tool call itself checks and names.
/// The SDK's session manager: sessions by id, each ended by its client or after 5
/// minutes idle.
pub type Sessions = rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

pub(crate) fn service(
    state: Arc<AppState>,
) -> rmcp::transport::StreamableHttpService<McpServer, Sessions> {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    // The bearer token is what keeps another site out (a page rebinding a name to this
    // host has no token); off loopback the server speaks TLS under names of its own.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.max_request_body_bytes = state.limits.max_json_bytes.saturating_add(64 << 10);
    // Open event streams would hold a graceful shutdown forever: they end when it begins.
    config.cancellation_token = state.mcp_streams.child_token();
    let factory = state.clone();
    rmcp::transport::StreamableHttpService::new(
        move || Ok(McpServer::http(factory.clone())),
        state.mcp_sessions.clone(),
        config,
    )
}

/// Refuses a request to `/mcp` without a valid bearer token (401, as `/v1` does), and
/// hands the principal to the SDK in the request's extensions.
pub(crate) async fn authenticate(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    match crate::extract::Caller::from_request_parts(&mut parts, &state).await {
        Ok(crate::extract::Caller(principal)) => {
            // A request without a session id opens one: refused past the bound, so that
            // what clients open cannot grow the host's memory without end.
            let opens = parts.method == axum::http::Method::POST
                && !parts.headers.contains_key("mcp-session-id");
            let max = state.limits.max_mcp_sessions;
            if opens && state.mcp_sessions.sessions.read().await.len() >= max {
                return ApiError::unavailable(format!(
                    "{max} MCP sessions are open on this host (latchkey serve --max-mcp-sessions); close one (DELETE /mcp) or try again shortly"
                ))
                .into_response();
            }
            parts.extensions.insert(principal);
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(e) => e.into_response(),
    }
}
