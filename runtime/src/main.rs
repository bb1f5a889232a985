//! The `latchkey` command: parses arguments, calls `latchkey-host`'s [`Latchkey`] façade,
//! prints. No policy is decided here.
//!
//! [`Latchkey`]: latchkey_host::Latchkey

mod commands;
mod common;
mod limits;
mod master_key;

use latchkey_cli::{json, quiet_on_closed_pipe, remote, report};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use commands::audit::AuditCommand;
use commands::check::CheckCommand;
use commands::compile::CompileCommand;
use commands::init::InitCommand;
use commands::mcp::McpCommand;
use commands::member::MemberCommand;
use commands::register::{ComponentCommand, WorkflowCommand};
use commands::run::RunCommand;
use commands::scripts::ScriptsCommand;
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
#[command(name = "latchkey", version, max_term_width = 100, after_help = EXIT_STATUS)]
struct Cli {
    #[command(flatten, next_help_heading = GLOBAL_OPTIONS)]
    store: StoreArgs,
    #[command(flatten, next_help_heading = GLOBAL_OPTIONS)]
    remote: remote::RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

/// The heading of the options every command takes (where the store, the Transit key and the
/// server are), apart from each command's own.
const GLOBAL_OPTIONS: &str = "Global options";

/// What `latchkey --help` says about exit codes: the part of the scripting contract that is
/// not printed.
const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  an error: bad input, a refusal, a store or server error; `check`: something in the
     workflow is wrong; `audit verify`: the trail was altered or damaged
  2  a usage error: an unknown command or option, a missing or invalid argument
  3  `run`: a step failed (returned an error, trapped or hit a limit)

With --json, `run`, `check`, `audit verify`, `token list`, `component list` and `workflow
list` print JSON on stdout with the API's field names: one object per line for lists, one
document otherwise. Messages and reports go to stderr.";

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
    /// Serve the Model Context Protocol on stdin/stdout for a desktop agent: registered
    /// workflows and components are its tools, run with keys the agent never sees.
    Mcp(McpCommand),
    /// API tokens for `latchkey serve`: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Agent-written scripts (the MCP tool `run_script`): show, enable with the keys they
    /// may ask for, disable. Off by default; admins only
    #[command(subcommand)]
    Scripts(ScriptsCommand),
    /// Components registered on a server (with --server).
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Workflows registered on a server (with --server).
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Print a completion script for SHELL on stdout, e.g.
    /// `latchkey completions bash > /etc/bash_completion.d/latchkey`,
    /// `latchkey completions zsh > "${fpath[1]}/_latchkey"`,
    /// `latchkey completions fish > ~/.config/fish/completions/latchkey.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The command line: [`Cli`]'s definition, with the options that make no sense for `serve`
/// (which *is* the server) and `mcp` (which serves the local store) hidden from their help.
fn command_line() -> clap::Command {
    let mut cmd = Cli::command();
    // Propagates the global options to every subcommand, so that they can be edited there.
    cmd.build();
    let local = |c: clap::Command| {
        // `mut_args` edits them in place (`mut_arg` would reorder a built command's arguments).
        c.mut_args(|a| match a.get_id().as_str() {
            "server" | "token_file" => a.hide(true),
            _ => a,
        })
    };
    cmd.mut_subcommand("serve", local)
        .mut_subcommand("mcp", local)
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command_line().get_matches()).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_closed_pipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = &cli.store;
    // Completions need neither a store nor a server, whatever the environment names.
    let remote = match cli.command {
        Command::Completions { .. } => Ok(None),
        _ => cli.remote.remote(),
    };
    let result = remote.and_then(|server| dispatch(cli.command, store, server.as_ref()));
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
        Command::Mcp(cmd) => local_only("mcp").and_then(|()| done(cmd.execute(store))),
        Command::Token(cmd) => done(cmd.execute(store, server)),
        Command::Scripts(cmd) => done(cmd.execute(store, server)),
        Command::Component(cmd) => done(cmd.execute(server)),
        Command::Workflow(cmd) => done(cmd.execute(server)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command_line(), "latchkey", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .context("writing the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
