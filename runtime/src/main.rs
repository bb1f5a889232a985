//! The `latchkey` command.

mod audit_cmd;
mod cli;
mod compile_cmd;
mod keys;
mod manifest;
mod report;
mod run_cmd;
mod secret_cmd;
mod workflow_cmd;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{AuditCommand, Cli, Command, MemberCommand, StoreCommand};
use std::process::ExitCode;

/// Exit code for a step that returned an error, trapped or hit a limit (1 is any other
/// failure, 2 a usage error).
pub const EXIT_STEP_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init => keys::init(&cli.store).map(|()| ExitCode::SUCCESS),
        Command::Secret(cmd) => secret_cmd::run(&cli.store, cmd).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run_cmd::run(&cli.store, args),
        Command::Check(args) => workflow_cmd::check(&cli.store, args),
        Command::Compile(args) => compile_cmd::run(&cli.store, args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => match &args.command {
            Some(AuditCommand::Verify { expect_head }) => {
                audit_cmd::verify(&cli.store, expect_head.as_deref())
            }
            None => audit_cmd::run(&cli.store, args).map(|()| ExitCode::SUCCESS),
        },
        Command::Store(StoreCommand::Verify) => {
            let store = keys::open_store(&cli.store)?;
            let report = store.verify_all().context("reading the store")?;
            let damaged = report.iter().filter(|(_, r)| r.is_err()).count();
            for (id, outcome) in &report {
                match outcome {
                    Ok(()) => println!("ok       {id}"),
                    Err(e) => println!("DAMAGED  {id}: {e}"),
                }
            }
            println!("{} record(s), {damaged} damaged", report.len());
            Ok(if damaged == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Store(StoreCommand::RotateMaster { new_key_file }) => {
            keys::rotate_master(&cli.store, &new_key_file).map(|()| ExitCode::SUCCESS)
        }
        Command::Member(MemberCommand::Remove { user, actor }) => {
            let store = keys::open_store(&cli.store)?;
            let actor = actor.unwrap_or_else(os_user);
            let deleted = store
                .delete_created_by(&user, &actor)
                .context("removing the member's secrets")?;
            println!("removed member {user}: deleted {} secret(s)", deleted.len());
            for m in deleted {
                println!("  {} {}", m.scope, m.key);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The acting identity: `--as`, else the OS user.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned())
}
