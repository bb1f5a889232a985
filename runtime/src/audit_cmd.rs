//! `latchkey audit` and `latchkey audit verify`.

use crate::cli::{AuditArgs, StoreArgs};
use crate::keys;
use anyhow::{Context, Result};
use latchkey_host::audit::{self, AuditRecord, Head};
use std::process::ExitCode;

pub fn run(store_args: &StoreArgs, args: AuditArgs) -> Result<()> {
    let store = keys::open_store(store_args)?;
    let (records, unreadable) = audit::read_all(&store)?;
    let selected = records.into_iter().filter(|r| {
        args.run.as_ref().is_none_or(|run| &r.run_id == run)
            && args.key.as_ref().is_none_or(|k| &r.key == k)
    });
    for r in selected {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{}", line(&r));
        }
    }
    if unreadable > 0 {
        eprintln!("warning: {unreadable} audit record(s) could not be read");
    }
    Ok(())
}

/// One record as a line of text (never a value: records hold none).
fn line(r: &AuditRecord) -> String {
    let when = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.time_ms),
    );
    if let Some(actor) = &r.actor {
        // A change to the store.
        let member = if r.user.is_empty() {
            String::new()
        } else {
            format!(" member={}", r.user)
        };
        return format!(
            "{when} {:?} by={actor}{member} {} scope={} v={} -> {}",
            r.event,
            if r.key.is_empty() { "-" } else { &r.key },
            r.scope.as_deref().unwrap_or("-"),
            r.version.map_or("-".to_owned(), |v| v.to_string()),
            r.outcome
        );
    }
    format!(
        "{when} {} {}/{} step={} user={} {:?} {} scope={} v={} dest={} at={} -> {}",
        r.run_id,
        r.workspace,
        r.workflow,
        r.step,
        r.user,
        r.event,
        r.key,
        r.scope.as_deref().unwrap_or("-"),
        r.version.map_or("-".to_owned(), |v| v.to_string()),
        r.destination.as_deref().unwrap_or("-"),
        r.location.as_deref().unwrap_or("-"),
        r.outcome
    )
}

/// `latchkey audit verify [--expect-head SEQ:MAC]`: checks the audit chain and prints what
/// it found; exits 1 if a record was modified, deleted, reordered or inserted, or if the
/// expected head (printed by an earlier verify and kept elsewhere) is no longer there.
pub fn verify(store_args: &StoreArgs, expect_head: Option<&str>) -> Result<ExitCode> {
    let expected: Option<Head> = expect_head
        .map(|h| h.parse::<Head>())
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--expect-head")?;
    let store = keys::open_store(store_args)?;
    let report = audit::verify(&store).context("reading the audit trail")?;
    println!(
        "{} record(s): {} chained and intact, {} unchained legacy record(s) (written before the chain; not authenticated)",
        report.records, report.chained, report.legacy
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
