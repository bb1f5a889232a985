//! `latchkey init`: a store and its master key file.

use crate::common::StoreArgs;
use crate::master_key::{self, MASTER_KEY_ENV};
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_host::{KeyWrapper, MasterKey};
use latchkey_host::{Latchkey, Options};

/// `latchkey init`: the key file (0600, in a directory created 0700) unless
/// LATCHKEY_MASTER_KEY is set or the file exists, and the store directory (0700).
#[derive(Args, Debug)]
pub struct InitCommand {}

impl InitCommand {
    pub fn execute(self, args: &StoreArgs) -> Result<()> {
        if args.sled_store_exists() {
            bail!(
                "a Latchkey store already exists at {}; refusing to overwrite it",
                args.store
            );
        }
        if let Some(transit) = master_key::transit(args)? {
            Latchkey::init_at(&args.store, &transit, Options::default())?;
            println!(
                "initialised store {} with its data key wrapped by {}",
                args.store,
                transit.describe()
            );
            println!(
                "no master key exists on this host: every host needs a token for that Transit key"
            );
            return Ok(());
        }
        let (master, source) = if std::env::var_os(MASTER_KEY_ENV).is_some() {
            (
                master_key::load(args)?,
                format!("the key in {MASTER_KEY_ENV}"),
            )
        } else if args.master_key_file.exists() {
            (
                master_key::read_key_file(&args.master_key_file)?,
                format!("the existing key file {}", args.master_key_file.display()),
            )
        } else {
            let key = MasterKey::generate().context("generating a master key")?;
            master_key::write_key_file(&args.master_key_file, &key)?;
            (
                key,
                format!(
                    "a new master key written to {} (mode 0600)",
                    args.master_key_file.display()
                ),
            )
        };
        Latchkey::init_at(&args.store, &master, Options::default())?;
        println!("initialised store {} sealed with {source}", args.store);
        println!("keep the master key secret and backed up: without it the store cannot be opened");
        Ok(())
    }
}
