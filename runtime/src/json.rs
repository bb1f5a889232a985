//! `--json`: the machine-readable form of a command's answer, for scripts. The values are the
//! API's own types (`latchkey_server::api`, or the library's types the API returns), so the
//! field names are the API's. A list is printed one object per line (JSON Lines), anything
//! else as one document; messages and reports stay on stderr.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

/// The `--json` flag of a command.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct JsonArgs {
    /// Print JSON on stdout, with the API's field names: one object per line for a list,
    /// one document otherwise.
    #[arg(long)]
    pub json: bool,
}

/// Prints `items` one JSON object per line.
pub fn lines<T: Serialize>(items: impl IntoIterator<Item = T>) -> Result<()> {
    for item in items {
        println!("{}", serde_json::to_string(&item)?);
    }
    Ok(())
}

/// Prints `value` as one JSON document.
pub fn document<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
