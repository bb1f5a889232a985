//! Command-line interface definition.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Latchkey runs WebAssembly workflow steps that can use your API keys but never read them.
///
/// Keys are stored sealed (AES-256-GCM) in an embedded store, each bound to the hosts and
/// request locations it may be sent to. A step gets an opaque handle; the host injects the
/// value into the step's outbound HTTP request and scrubs it from the response.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the store and the master key are.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Store directory.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_STORE",
        default_value = ".latchkey/store"
    )]
    pub store: PathBuf,
    /// Master key file (64 hex characters). Ignored when LATCHKEY_MASTER_KEY is set.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_MASTER_KEY_FILE",
        default_value = ".latchkey/master.key"
    )]
    pub master_key_file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a store and a master key file (mode 0600), or use LATCHKEY_MASTER_KEY.
    Init,
    /// Manage secrets: set, rotate, rm, list. Values are read from stdin or a hidden
    /// prompt, never from the command line, and can never be read back.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Run a workflow: a `workflow.toml` manifest (steps in order, each step's output the
    /// next one's input), or a single step (.wasm component). Prints the final output on
    /// stdout.
    Run(RunArgs),
    /// Check a workflow manifest without running it: every component loads, and every key a
    /// step declares (its allowlist and pins) resolves. Prints the tier and scope each key
    /// would use, or why it is missing. Nothing is decrypted. Exits 1 if anything is wrong.
    Check(CheckArgs),
    /// Compile steps (.wasm) into the compiled-component cache, so that `latchkey run`
    /// loads them in about a millisecond instead of compiling them.
    Compile(crate::compile_cmd::CompileArgs),
    /// Print the audit trail of credential use and store changes (never values);
    /// `audit verify` checks that nobody altered it.
    Audit(AuditArgs),
    /// Store maintenance.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Workspace members.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Store a secret (create, or replace value and binding). The value is read from
    /// stdin (one trailing newline removed) or, on a terminal, from a hidden prompt.
    ///
    /// Example: printf %s "$TOKEN" | latchkey secret set SLACK_TOKEN --allow-host slack.com --inject header:Authorization
    Set(SetArgs),
    /// Replace the value of an existing secret, keeping its binding. Takes effect at the
    /// next call of any running or future step.
    Rotate(RotateArgs),
    /// Delete a secret. Steps using it fail at their next call.
    Rm(KeyArgs),
    /// List secrets: names and metadata, never values.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Credential key: A-Z, 0-9 and _ (e.g. SLACK_TOKEN).
    pub key: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Acting identity recorded in the secret's metadata (default: the OS user).
    #[arg(long = "as", value_name = "NAME", env = "LATCHKEY_ACTOR")]
    pub actor: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// Scope: platform, workspace:W, workflow:W/F, user:U, user:U@W/F or builder:B@W/F.
    /// `workspace` alone means workspace:default.
    #[arg(long, default_value = "workspace:default")]
    pub scope: String,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// A host the value may be sent to: `api.example.com`, `*.example.com` (exactly one
    /// label more, not the apex), an IP literal, optionally `:PORT` or `:*`. Without a
    /// port only the scheme's default port matches. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]", required = true)]
    pub allow_host: Vec<String>,
    /// Where in a request the value may be injected: `header:NAME`, `query:NAME`,
    /// `basic-auth`, or `body`. Repeatable.
    #[arg(long = "inject", value_name = "LOCATION", required = true)]
    pub inject: Vec<String>,
    /// Also allow plain http:// (loopback tests, in-cluster services). Off by default.
    #[arg(long)]
    pub allow_http: bool,
    /// Integration type; only steps declaring it may use the secret.
    #[arg(long, default_value = "http")]
    pub integration: String,
    /// An HTTP method the value may be sent with (GET, POST, ...). Repeatable. Default:
    /// any method.
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// A URL path prefix the value may be sent to (`/api/v2`; matched at segment
    /// boundaries). Repeatable. Default: any path.
    #[arg(long = "path-prefix", value_name = "PREFIX")]
    pub path_prefixes: Vec<String>,
    /// Let the value be sent to non-public addresses (loopback, private, link-local,
    /// unique-local); never to cloud metadata endpoints. Off by default.
    #[arg(long)]
    pub allow_internal: bool,
    /// Store the value even if it looks easy to guess (short, few distinct characters, a
    /// placeholder). Recorded in the secret's metadata and shown by `secret list`.
    #[arg(long)]
    pub allow_weak_value: bool,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Store the new value even if it looks easy to guess. Replaces the override recorded
    /// for the previous value.
    #[arg(long)]
    pub allow_weak_value: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this scope (same forms as `secret set --scope`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A workflow manifest (`*.toml`), or one step: a WebAssembly component built for
    /// wasm32-wasip2 with latchkey-sdk.
    pub step: PathBuf,
    /// Input JSON for the step.
    #[arg(long, default_value = "{}", conflicts_with = "input_file")]
    pub input: String,
    /// Read the input JSON from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Invoking user (resolution tiers 1 and 2). Default: the OS user.
    #[arg(long, env = "LATCHKEY_USER")]
    pub user: Option<String>,
    /// Workspace the step runs in (single step only; a manifest names its own). Default:
    /// `default`.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Workflow name (single step only; default: the file name without extension).
    #[arg(long)]
    pub workflow: Option<String>,
    /// The workflow's builder (resolution tier 5; single step only).
    #[arg(long)]
    pub builder: Option<String>,
    /// Integration types the step declares. Repeatable. Default: http. (Single step only.)
    #[arg(long = "integration", value_name = "TYPE")]
    pub integrations: Vec<String>,
    /// Only these credential keys may resolve (comma-separated or repeated; single step only).
    #[arg(long = "allow-key", value_name = "KEY", value_delimiter = ',')]
    pub allow_keys: Vec<String>,
    /// Let fetches reach the non-public network CIDR (`10.0.0.0/8`, `127.0.0.1/32`,
    /// `fd00::/8`). Repeatable, at most 32. Cloud metadata endpoints stay refused whatever is
    /// granted. A secret whose binding has `--allow-internal` needs no grant.
    #[arg(long = "allow-internal", value_name = "CIDR")]
    pub allow_internal: Vec<String>,
    /// Short for `--allow-internal 127.0.0.0/8 --allow-internal ::1/128`: loopback only
    /// (local test upstreams), not other private networks.
    #[arg(long)]
    pub allow_private_network: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print a report (duration, fetches, credentials used by name and tier) on stderr.
    /// Always on for a manifest.
    #[arg(long)]
    pub report: bool,
    #[command(flatten)]
    pub cache: crate::compile_cmd::CacheArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The workflow manifest (`workflow.toml`).
    pub manifest: PathBuf,
    /// Invoking user to check for (resolution tiers 1 and 2). Default: the OS user.
    #[arg(long, env = "LATCHKEY_USER")]
    pub user: Option<String>,
}

/// Limits on one run of a step. Defaults are `Limits::default()` in the library.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Guest memory: all linear memories and tables of the step's instance together, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub memory_mib: usize,
    /// Wall-clock deadline for the whole step, fetches included, in seconds (fractions
    /// allowed).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub deadline: f64,
    /// Time for one fetch, connection to last body byte, in seconds (never more than the
    /// deadline; a step may ask for less).
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    pub request_timeout: f64,
    /// Fetches per run.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_fetches: u32,
    /// Largest response body accepted, in KiB (as received, before any decompression).
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    pub max_response_kib: usize,
    /// Largest request body sent, in KiB.
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    pub max_request_kib: usize,
    /// Headers in one request the step sends.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_request_headers: usize,
    /// Headers in one response the step receives; more fail the fetch.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_response_headers: usize,
    /// The step's log output, all lines together, in KiB; later lines are dropped and
    /// counted.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub max_log_kib: usize,
    /// `credentials.get` calls per run, whether or not the handles are dropped again (each
    /// is resolved and audited).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_credential_gets: u32,
    /// Step-written text in one header value, query value or query name, in KiB (secret
    /// values are not counted).
    #[arg(long, default_value_t = 8, value_name = "KIB")]
    pub max_header_value_kib: usize,
    /// Parts (text and secret) in one header value, query value or body template.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_value_parts: usize,
    /// Query parameters one request adds.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_query_params: usize,
    /// Distinct credentials whose values one run may inject.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_injected_credentials: usize,
    /// Secret parts in one request, all places together (each adds at most one value).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_secret_parts: usize,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only records of this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only records of this credential key.
    #[arg(long)]
    pub key: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit trail's MAC chain: exits 1 if a record was modified, deleted,
    /// reordered or inserted. Prints the head (SEQ:MAC) to keep elsewhere.
    Verify {
        /// A head printed by an earlier verify; fails if it is no longer in the chain.
        #[arg(long, value_name = "SEQ:MAC")]
        expect_head: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Re-wrap the store's data key under a new master key. Reads the new key (64 hex
    /// characters) from FILE; afterwards only the new key opens the store.
    RotateMaster {
        /// File holding the new master key; created (mode 0600) with a fresh random key
        /// if it does not exist.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Check that every stored record is intact and opens under the master key. Prints
    /// one line per record (never a value); exits non-zero if any is damaged.
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Remove a member: delete every secret they created, in every scope.
    Remove {
        /// The member's user name.
        user: String,
        /// Acting identity recorded in the audit trail (default: the OS user).
        #[arg(long = "as", value_name = "NAME", env = "LATCHKEY_ACTOR")]
        actor: Option<String>,
    },
}
