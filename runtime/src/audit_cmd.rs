//! `latchkey audit`.

use crate::cli::{AuditArgs, StoreArgs};
use crate::keys;
use anyhow::Result;
use latchkey_host::audit;

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
            let when = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.time_ms),
            );
            println!(
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
            );
        }
    }
    if unreadable > 0 {
        eprintln!("warning: {unreadable} audit record(s) could not be read");
    }
    Ok(())
}
