//! What `latchkey run` tells the operator about a step: its logs, the credentials it used
//! (names and tiers, never values), and why a step failed.

use latchkey_host::Refusal;
use latchkey_host::{CredentialUse, GuestLogLine, RunError, visible};
use std::borrow::Cow;

/// A field of what the CLI prints (a name, an audit record's field, a server's message,
/// an error) as it may reach a terminal: every control character but tab shown as
/// `\u{1b}`, line breaks included, so that text a step, a store or a server chose cannot
/// print a line of its own, move the cursor or set the window title. The one escape for
/// everything printed: [`shown_lines`] applies it line by line.
pub fn shown(text: &str) -> Cow<'_, str> {
    visible(text)
}

/// Multi-line text the operator reads as such (a step's output): [`shown`] for each line.
pub fn shown_lines(text: &str) -> String {
    text.split('\n').map(shown).collect::<Vec<_>>().join("\n")
}

/// A failed step in a few words, before the error itself.
pub fn failure_kind(e: &RunError) -> &'static str {
    match e {
        RunError::Guest(_) => "step error",
        RunError::Trap(_) | RunError::Deadline(_) | RunError::OutputTooLarge { .. } => {
            "step aborted"
        }
        _ => "step could not run",
    }
}

/// The guest's log lines, on stderr, prefixed with the step name.
pub fn print_logs(step: &str, logs: &[GuestLogLine]) {
    for line in logs {
        eprintln!("[{} {}] {}", shown(step), line.level, shown(&line.message));
    }
}

/// The credentials a step resolved.
pub fn print_credentials(used: &[CredentialUse]) {
    for c in used {
        eprintln!(
            "    credential {} from tier {} ({})",
            shown(&c.key),
            c.tier,
            shown(&c.scope)
        );
    }
}

/// Why credentials were refused to a step (reasons, never values), under an error line that
/// already says `said` (the step's own message, which usually repeats the refusal it was
/// given): what the operator needs to fix it, said once. What the record adds (what the
/// binding allows, the flags that change it) is printed; a refusal the message already holds
/// in full is not. `refusals` are (key, reason) pairs.
pub fn print_refusals_after<'a>(
    said: &str,
    refusals: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (key, reason) in refusals {
        if said.contains(reason) {
            continue;
        }
        // The longest leading part of the reason, up to a `: `, that was already said.
        let known = reason
            .match_indices(": ")
            .map(|(at, _)| at)
            .filter(|&at| said.contains(&reason[..at]))
            .last();
        match known {
            Some(at) => eprintln!("    {}: {}", shown(key), shown(&reason[at + 2..])),
            None => eprintln!("    refused {}: {}", shown(key), shown(reason)),
        }
    }
}

/// The (key, reason) pairs of a local run's refusals, for [`print_refusals_after`].
pub fn refusal_pairs(refusals: &[Refusal]) -> impl Iterator<Item = (&str, &str)> {
    refusals.iter().map(|r| (r.key.as_str(), r.reason.as_str()))
}

/// Where to look next after a failed run.
pub fn print_run_id(run_id: &str) {
    let run_id = shown(run_id);
    eprintln!("run id {run_id} (see `latchkey audit --run {run_id}`)");
}

/// An error and its causes on one line, as anyhow's `{:#}` prints them, except that a
/// cause already quoted by the message above it is not repeated (library errors keep their
/// cause as a source and also name it, so that `to_string` alone is complete).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut causes = Vec::new();
    let mut next = Some(e);
    while let Some(c) = next {
        causes.push(c);
        next = c.source();
    }
    join(causes)
}

/// Like [`chain`], for an anyhow error (the binary's own context first).
pub fn anyhow_chain(e: &anyhow::Error) -> String {
    join(e.chain().collect())
}

fn join(causes: Vec<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = String::new();
    for c in causes {
        let s = c.to_string();
        if text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}
