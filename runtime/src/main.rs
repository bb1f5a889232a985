//! The `latchkey` command: parses arguments, calls `latchkey-host`'s [`Latchkey`] façade,
//! prints. No policy is decided here.
//!
//! [`Latchkey`]: latchkey_host::Latchkey

mod commands;
mod common;
mod limits;
mod master_key;
mod remote;
mod report;

use clap::{Parser, Subcommand};
use commands::audit::AuditCommand;
use commands::check::CheckCommand;
use commands::compile::CompileCommand;
use commands::init::InitCommand;
use commands::member::MemberCommand;
use commands::register::{ComponentCommand, WorkflowCommand};
use commands::run::RunCommand;
use commands::secret::SecretCommand;
use commands::serve::ServeCommand;
use commands::store::StoreCommand;
use commands::token::TokenCommand;
use common::StoreArgs;
use std::process::ExitCode;

/// Latchkey runs WebAssembly workflow steps that can use your API keys but never read them.
///
/// Keys are stored sealed (AES-256-GCM) in an embedded store, each bound to the hosts and
/// request locations it may be sent to. A step gets an opaque handle; the host injects the
/// value into the step's outbound HTTP request and scrubs it from the response.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    remote: remote::RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a store and a master key file (mode 0600), or use LATCHKEY_MASTER_KEY.
    Init(InitCommand),
    /// Manage secrets: set, rotate, rm, list. Values are read from stdin or a hidden
    /// prompt, never from the command line, and can never be read back.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Run a workflow: a `workflow.toml` manifest (steps in order, each step's output the
    /// next one's input), or a single step (.wasm component). Prints the final output on
    /// stdout.
    Run(RunCommand),
    /// Check a workflow manifest without running it: every component loads, and every key a
    /// step declares (its allowlist and pins) resolves. Prints the tier and scope each key
    /// would use, or why it is missing. Nothing is decrypted. Exits 1 if anything is wrong.
    Check(CheckCommand),
    /// Compile steps (.wasm) into the compiled-component cache, so that `latchkey run`
    /// loads them in about a millisecond instead of compiling them.
    Compile(CompileCommand),
    /// Print the audit trail of credential use and store changes (never values);
    /// `audit verify` checks that nobody altered it.
    Audit(AuditCommand),
    /// Store maintenance.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Workspace members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Serve runs and write-only credential management over HTTP, with roles taken from
    /// bearer tokens (`latchkey token create`). Prints the address it listens on.
    Serve(ServeCommand),
    /// API tokens for `latchkey serve`: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Components registered on a server (with --server).
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Workflows registered on a server (with --server).
    #[command(subcommand)]
    Workflow(WorkflowCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = &cli.store;
    let result = cli
        .remote
        .remote()
        .and_then(|server| dispatch(cli.command, store, server.as_ref()));
    match result {
        Ok(code) => code,
        Err(e) => {
            // A server's message or a step's error can hold any text.
            eprintln!("error: {}", report::shown(&report::anyhow_chain(&e)));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(
    command: Command,
    store: &StoreArgs,
    server: Option<&remote::Remote>,
) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let local_only = |what: &str| -> anyhow::Result<()> {
        if server.is_some() {
            anyhow::bail!("`latchkey {what}` works on the local store; it does not take --server");
        }
        Ok(())
    };
    match command {
        Command::Init(cmd) => local_only("init").and_then(|()| done(cmd.execute(store))),
        Command::Secret(cmd) => done(cmd.execute(store, server)),
        Command::Run(cmd) => cmd.execute(store, server),
        Command::Check(cmd) => cmd.execute(store, server),
        Command::Compile(cmd) => local_only("compile").and_then(|()| done(cmd.execute(store))),
        Command::Audit(cmd) => cmd.execute(store, server),
        Command::Store(cmd) => local_only("store").and_then(|()| cmd.execute(store)),
        Command::Member(cmd) => done(cmd.execute(store, server)),
        Command::Serve(cmd) => local_only("serve").and_then(|()| done(cmd.execute(store))),
        Command::Token(cmd) => done(cmd.execute(store, server)),
        Command::Component(cmd) => done(cmd.execute(server)),
        Command::Workflow(cmd) => done(cmd.execute(server)),
    }
}
