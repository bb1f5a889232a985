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
    /// Print the audit trail of credential use (never values).
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
    Rotate(KeyArgs),
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
    /// Allow fetches to loopback, private, link-local and other non-public addresses.
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

#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Guest memory limit in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub memory_mib: usize,
    /// Wall-clock deadline for the step in seconds (fractions allowed).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub deadline: f64,
    /// Fetches allowed per run.
    #[arg(long, default_value_t = 32)]
    pub max_fetches: u32,
    /// Largest response body accepted, in KiB.
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    pub max_response_kib: usize,
    /// Largest request body sent, in KiB.
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    pub max_request_kib: usize,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
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
    /// Remove a member: delete every secret they created, in every scope (seed 003).
    Remove {
        /// The member's user name.
        user: String,
    },
}
