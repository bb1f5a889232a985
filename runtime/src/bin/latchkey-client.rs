//! `latchkey-client`: `latchkey run --server` as a small binary of its own. It starts a run
//! on a `latchkey serve` and prints it exactly as `latchkey run --server` does, but links
//! no WebAssembly engine, so a script that starts a process per run does not load one.

use clap::{Args, Parser, Subcommand};
use latchkey_cli::remote::RemoteArgs;
use latchkey_cli::remote_run::{self, InputArgs, SingleStepArgs};
use latchkey_cli::report;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs registered steps and workflows on a `latchkey serve` (the client part of the
/// `latchkey` command, without its engine: for scripts that start a process per run).
#[derive(Parser, Debug)]
#[command(name = "latchkey-client", version, max_term_width = 100, after_help = EXIT_STATUS)]
struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  an error: bad input, a refusal, an unreachable server or an error it answered
  2  a usage error: an unknown command or option, a missing or invalid argument
  3  `run`: a step failed (returned an error, trapped or hit a limit)

With --json, `run` prints the run on stdout as one JSON document with the API's field names.
Messages and reports go to stderr.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a registered component or workflow on the server as the token's principal and
    /// print its output: `latchkey run STEP --server URL`, as a smaller process.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// What runs: a registered component's name or `sha256:` digest, a `.wasm` file (the
    /// registered component with its digest), or a workflow manifest (`.toml`: the
    /// registered workflow of its name).
    step: PathBuf,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    single: SingleStepArgs,
    /// Print a report (duration, fetches, credentials used by name and tier) on stderr.
    /// Always on for a workflow.
    #[arg(long)]
    report: bool,
    /// Print the run on stdout as one JSON document, as `GET /v1/runs/{id}` answers it; the
    /// exit code is the same as without it.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    latchkey_cli::quiet_on_closed_pipe();
    let result = cli.remote.remote().and_then(|server| {
        let Some(server) = server else {
            anyhow::bail!(
                "latchkey-client talks to a server: give --server URL or set LATCHKEY_SERVER (a local store is run by `latchkey run`)"
            );
        };
        match cli.command {
            Command::Run(run) => remote_run::run_on_server(
                &server,
                &run.step,
                &run.input,
                &run.single,
                run.report,
                run.json,
            ),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // A server's message can hold any text.
            eprintln!("error: {}", report::shown(&report::anyhow_chain(&e)));
            ExitCode::FAILURE
        }
    }
}
