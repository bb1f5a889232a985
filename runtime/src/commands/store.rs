//! `latchkey store …`: maintenance of the store itself.

use crate::common::{StoreArgs, operator, os_user};
use crate::master_key::{self, MASTER_KEY_ENV};
use anyhow::{Context, Result};
use clap::Subcommand;
use latchkey_host::Options;
use latchkey_host::store::MasterKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

impl StoreCommand {
    pub fn execute(self, args: &StoreArgs) -> Result<ExitCode> {
        match self {
            StoreCommand::RotateMaster { new_key_file } => {
                rotate_master(args, &new_key_file).map(|()| ExitCode::SUCCESS)
            }
            StoreCommand::Verify => verify(args),
        }
    }
}

fn verify(args: &StoreArgs) -> Result<ExitCode> {
    let latchkey = args.open(Options::default())?;
    let report = latchkey
        .verify_store(&operator(&os_user())?)
        .context("reading the store")?;
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

fn rotate_master(args: &StoreArgs, new_key_file: &Path) -> Result<()> {
    let old = master_key::load(args)?;
    let mut latchkey = args.open(Options::default())?;
    let new = if new_key_file.exists() {
        master_key::read_key_file(new_key_file)?
    } else {
        let key = MasterKey::generate().context("generating a master key")?;
        master_key::write_key_file(new_key_file, &key)?;
        key
    };
    let actor = std::env::var("LATCHKEY_ACTOR")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(os_user);
    latchkey
        .rotate_master(&operator(&actor)?, &old, &new)
        .context("re-wrapping the data key")?;
    println!(
        "the store {} is now sealed with the key in {}; the old key no longer opens it",
        args.store.display(),
        new_key_file.display()
    );
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        println!("update {MASTER_KEY_ENV} to the new key");
    } else {
        println!(
            "point --master-key-file (or LATCHKEY_MASTER_KEY_FILE) at the new file, or move it over the old one"
        );
    }
    Ok(())
}
