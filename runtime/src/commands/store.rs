//! `latchkey store …`: maintenance of the store itself.

use crate::common::{StoreArgs, operator, os_user};
use crate::master_key::{self, MASTER_KEY_ENV};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use latchkey_host::{KeyWrapper, Location, MasterKey};
use latchkey_host::{Latchkey, Options};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Re-wrap the store's data key under a new master key. Reads the new key (64 hex
    /// characters) from FILE; afterwards only the new key opens the store.
    ///
    /// With --transit-key (a store whose data key Transit wraps) and no --new-key-file,
    /// re-wraps it under the Transit key's newest version, after `bao write -f
    /// transit/keys/NAME/rotate`. With --to-transit, moves a store from its master key to
    /// the Transit key.
    RotateMaster {
        /// File holding the new master key; created (mode 0600) with a fresh random key
        /// if it does not exist.
        #[arg(long, value_name = "FILE", conflicts_with = "to_transit")]
        new_key_file: Option<PathBuf>,
        /// Move the data key from the master key (file or LATCHKEY_MASTER_KEY) to the
        /// Transit key given by --transit-addr/--transit-key.
        #[arg(long)]
        to_transit: bool,
    },
    /// Check that every stored record is intact and opens under the master key. Prints
    /// one line per record (never a value); exits non-zero if any is damaged.
    Verify,
    /// Create or upgrade the schema of a PostgreSQL store (`--store postgres://…`) to the
    /// version this build uses. Safe to run again, and from several hosts at once. A sled
    /// directory needs no schema.
    Migrate,
    /// Copy every record (sealed as stored: nothing is decrypted) from the store FROM into
    /// a new store TO, e.g. from a sled directory into a migrated PostgreSQL database or
    /// back. The copy opens with the same master key; it is verified before this returns.
    Copy {
        /// The store to copy: a directory or a PostgreSQL URL.
        #[arg(long, value_name = "DIR|URL")]
        from: Location,
        /// The new store: a directory (created) or a migrated database holding no store.
        #[arg(long, value_name = "DIR|URL")]
        to: Location,
    },
}

impl StoreCommand {
    pub fn execute(self, args: &StoreArgs) -> Result<ExitCode> {
        match self {
            StoreCommand::RotateMaster {
                new_key_file,
                to_transit,
            } => {
                rotate_master(args, new_key_file.as_deref(), to_transit).map(|()| ExitCode::SUCCESS)
            }
            StoreCommand::Verify => verify(args),
            StoreCommand::Migrate => migrate(args).map(|()| ExitCode::SUCCESS),
            StoreCommand::Copy { from, to } => copy(args, &from, &to),
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
            // Ids and errors come from the store's bytes, which may be damaged.
            Ok(()) => println!("ok       {}", crate::report::shown(id)),
            Err(e) => println!(
                "DAMAGED  {}: {}",
                crate::report::shown(id),
                crate::report::shown(&e.to_string())
            ),
        }
    }
    println!("{} record(s), {damaged} damaged", report.len());
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn migrate(args: &StoreArgs) -> Result<()> {
    let migrated =
        Latchkey::migrate(&args.store).with_context(|| format!("migrating {}", args.store))?;
    let Some((before, after)) = migrated else {
        println!(
            "the store {} is a sled directory: it has no schema to migrate",
            args.store
        );
        return Ok(());
    };
    if before == after {
        println!(
            "the schema of {} is up to date (version {after})",
            args.store
        );
    } else {
        println!(
            "migrated the schema of {} from version {before} to {after}",
            args.store
        );
    }
    Ok(())
}

fn copy(args: &StoreArgs, from: &Location, to: &Location) -> Result<ExitCode> {
    if from == to {
        bail!("--from and --to are the same store ({from})");
    }
    let key = master_key::provider(args)?;
    let by = operator(&os_user())?;
    let source = Latchkey::open_at(from, key.wrapper(), Options::default())?;
    let copied = source
        .copy_store(&by, to)
        .with_context(|| format!("copying {from} into {to}"))?;
    drop(source);
    for (ns, n) in &copied {
        println!("copied {n} {ns} record(s)");
    }
    let target = Latchkey::open_at(to, key.wrapper(), Options::default())?;
    let report = target.verify_store(&by).context("verifying the copy")?;
    let damaged = report.iter().filter(|(_, r)| r.is_err()).count();
    let audit = target
        .verify_audit(&by)
        .context("verifying the copy's audit trail")?;
    println!(
        "verified {to}: {} secret(s), {damaged} damaged; audit trail: {} chained record(s), {} problem(s)",
        report.len(),
        audit.chained,
        audit.findings.len()
    );
    Ok(if damaged == 0 && audit.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rotate_master(args: &StoreArgs, new_key_file: Option<&Path>, to_transit: bool) -> Result<()> {
    let actor = std::env::var("LATCHKEY_ACTOR")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(os_user);
    let by = operator(&actor)?;
    let transit = master_key::transit(args)?;
    if to_transit || new_key_file.is_none() {
        let Some(transit) = transit else {
            bail!(
                "give --new-key-file FILE (a new master key), or --transit-addr and --transit-key (a Transit key)"
            );
        };
        let old: Box<dyn KeyWrapper> = if to_transit {
            Box::new(master_key::load(args)?)
        } else {
            Box::new(master_key::transit(args)?.context("the Transit key")?)
        };
        let mut latchkey = Latchkey::open_at(&args.store, old.as_ref(), Options::default())?;
        latchkey
            .rotate_master(&by, old.as_ref(), &transit)
            .context("re-wrapping the data key")?;
        println!(
            "the data key of {} is now wrapped by the newest version of {}",
            args.store,
            transit.describe()
        );
        if to_transit {
            println!("the old master key no longer opens the store: remove it from this host");
        }
        return Ok(());
    }
    let Some(new_key_file) = new_key_file else {
        bail!("--new-key-file is required");
    };
    let old = master_key::provider(args)?;
    let mut latchkey = Latchkey::open_at(&args.store, old.wrapper(), Options::default())?;
    let new = if new_key_file.exists() {
        master_key::read_key_file(new_key_file)?
    } else {
        let key = MasterKey::generate().context("generating a master key")?;
        master_key::write_key_file(new_key_file, &key)?;
        key
    };
    latchkey
        .rotate_master(&by, old.wrapper(), &new)
        .context("re-wrapping the data key")?;
    println!(
        "the store {} is now sealed with the key in {}; the old key no longer opens it",
        args.store,
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
