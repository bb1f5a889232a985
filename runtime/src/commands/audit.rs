//! `latchkey audit` and `latchkey audit verify`.

use crate::common::{StoreArgs, operator, os_user};
use crate::remote::{Remote, encode};
use crate::report::shown;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use latchkey_host::{AuditQuery, Options};
use latchkey_host::{AuditRecord, AuditVerifyReport as VerifyReport, Head};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditCommand {
    #[command(subcommand)]
    pub command: Option<AuditSubcommand>,
    /// Only records of this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only records of this credential key.
    #[arg(long)]
    pub key: Option<String>,
    /// Print JSON: one record per line (the entries of `GET /v1/audit`'s `records`); with
    /// `verify`, one document.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditSubcommand {
    /// Check the audit trail's MAC chain: exits 1 if a record was modified, deleted,
    /// reordered or inserted. Prints the head (SEQ:MAC) to keep elsewhere.
    Verify {
        /// A head printed by an earlier verify; fails if it is no longer in the chain.
        #[arg(long, value_name = "SEQ:MAC")]
        expect_head: Option<String>,
    },
}

impl AuditCommand {
    pub fn execute(self, store: &StoreArgs, server: Option<&Remote>) -> Result<ExitCode> {
        if let Some(r) = server {
            if self.command.is_some() {
                anyhow::bail!("`audit verify` needs the store itself; run it on the server's host");
            }
            return self.list_remote(r).map(|()| ExitCode::SUCCESS);
        }
        match &self.command {
            Some(AuditSubcommand::Verify { expect_head }) => {
                verify(store, expect_head.as_deref(), self.json)
            }
            None => self.list(store).map(|()| ExitCode::SUCCESS),
        }
    }

    fn list_remote(&self, r: &Remote) -> Result<()> {
        let mut query = Vec::new();
        if let Some(run) = &self.run {
            query.push(format!("run={}", encode(run)));
        }
        if let Some(key) = &self.key {
            query.push(format!("key={}", encode(key)));
        }
        let page: latchkey_server::api::AuditRecords = r.get(
            "reading the audit trail",
            &format!("/v1/audit?{}", query.join("&")),
        )?;
        self.print(&page.records, page.unreadable)
    }

    fn print(&self, records: &[AuditRecord], unreadable: usize) -> Result<()> {
        for r in records {
            if self.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!("{}", line(r));
            }
        }
        if unreadable > 0 {
            eprintln!("warning: {unreadable} audit record(s) could not be read");
        }
        Ok(())
    }

    fn list(&self, store: &StoreArgs) -> Result<()> {
        let latchkey = store.open(Options::default())?;
        let query = AuditQuery {
            run: self.run.clone(),
            key: self.key.clone(),
            ..AuditQuery::default()
        };
        let page = latchkey.audit(&operator(&os_user())?, &query)?;
        self.print(&page.records, page.unreadable)
    }
}
/// One record as a line of text (never a value: records hold none). Every field goes
/// through [`shown`]: a record's text can come from a step (the names leading to where a
/// value went) or from a damaged or older store, and must not print a line of its own.
fn line(r: &AuditRecord) -> String {
    let when = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.time_ms),
    );
    let or_dash = |v: Option<&str>| shown(v.unwrap_or("-")).into_owned();
    let version = r.version.map_or("-".to_owned(), |v| v.to_string());
    if let Some(actor) = &r.actor {
        // A change to the store.
        let member = if r.user.is_empty() {
            String::new()
        } else {
            format!(" member={}", shown(&r.user))
        };
        return format!(
            "{when} {} by={}{member} {} scope={} v={version} -> {}",
            r.event.name(),
            shown(actor),
            if r.key.is_empty() {
                "-".into()
            } else {
                shown(&r.key)
            },
            or_dash(r.scope.as_deref()),
            shown(&r.outcome)
        );
    }
    format!(
        "{when} {} {}/{} step={} user={} {} {} scope={} v={version} dest={} at={} -> {}",
        shown(&r.run_id),
        shown(&r.workspace),
        shown(&r.workflow),
        shown(&r.step),
        shown(&r.user),
        r.event.name(),
        shown(&r.key),
        or_dash(r.scope.as_deref()),
        or_dash(r.destination.as_deref()),
        or_dash(r.location.as_deref()),
        shown(&r.outcome)
    )
}

/// `latchkey audit verify [--expect-head SEQ:MAC]`: checks the audit chain and prints what
/// it found; exits 1 if a record was modified, deleted, reordered or inserted, or if the
/// expected head (printed by an earlier verify and kept elsewhere) is no longer there.
fn verify(store: &StoreArgs, expect_head: Option<&str>, as_json: bool) -> Result<ExitCode> {
    let expected: Option<Head> = expect_head
        .map(|h| h.parse::<Head>())
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--expect-head")?;
    let latchkey = store.open(Options::default())?;
    let report = latchkey.verify_audit(&operator(&os_user())?)?;
    if as_json {
        return verify_json(&report, expected.as_ref());
    }
    println!(
        "{} record(s): {} chained and intact, {} unchained legacy record(s) (written before the chain; {})",
        report.records,
        report.chained,
        report.legacy,
        if report.genesis {
            "held to the chain's genesis marker"
        } else {
            "not authenticated"
        }
    );
    for f in &report.findings {
        let seq = f.seq.map_or("-".to_owned(), |s| s.to_string());
        println!(
            "BROKEN   record #{} (sequence {seq}): {}",
            f.position, f.problem
        );
    }
    let mut broken = !report.is_intact();
    if let Some(first) = report.first_broken() {
        println!(
            "first broken: record #{} (sequence {}): {}",
            first.position,
            first.seq.map_or("-".to_owned(), |s| s.to_string()),
            first.problem
        );
    }
    match &report.head {
        Some(head) => {
            println!("head: {head}");
            println!(
                "keep the head somewhere else (it detects deleted newest records): latchkey audit verify --expect-head {head}"
            );
        }
        None => println!("head: none (no chained records)"),
    }
    if let Some(expected) = &expected {
        if report.contains(expected) {
            println!("expected head {expected}: present");
        } else {
            println!(
                "BROKEN   expected head {expected} is missing: records were deleted from the end (or it belongs to another store)"
            );
            broken = true;
        }
    }
    if broken {
        println!("the audit trail has been tampered with or damaged");
        Ok(ExitCode::FAILURE)
    } else {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    }
}

/// `audit verify --json`: the report as one document, named as [`VerifyReport`]'s fields; the
/// exit code is the text form's.
fn verify_json(report: &VerifyReport, expected: Option<&Head>) -> Result<ExitCode> {
    let finding = |f: &latchkey_host::Finding| serde_json::json!({"position": f.position, "seq": f.seq, "problem": f.problem.to_string()});
    let expected_present = expected.map(|h| report.contains(h));
    let intact = report.is_intact() && expected_present != Some(false);
    crate::json::document(&serde_json::json!({
        "intact": intact,
        "records": report.records,
        "chained": report.chained,
        "legacy": report.legacy,
        "findings": report.findings.iter().map(finding).collect::<Vec<_>>(),
        "first_broken": report.first_broken().map(finding),
        "head": report.head.as_ref().map(ToString::to_string),
        "expected_head": expected.map(ToString::to_string),
        "expected_head_present": expected_present,
    }))?;
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
