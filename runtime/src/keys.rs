//! Master key handling and opening the store.

use crate::cli::StoreArgs;
use anyhow::{Context, Result, bail};
use latchkey_host::store::{MasterKey, SecretStore, check_private_file, create_private_dir};
use std::io::Write;
use std::path::Path;

/// Environment variable holding the master key as 64 hex characters.
pub const MASTER_KEY_ENV: &str = "LATCHKEY_MASTER_KEY";

/// The master key: LATCHKEY_MASTER_KEY if set, else the key file.
pub fn load_master(args: &StoreArgs) -> Result<MasterKey> {
    if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
        return MasterKey::from_bytes(text.as_bytes())
            .with_context(|| format!("reading {MASTER_KEY_ENV}"));
    }
    if !args.master_key_file.exists() {
        bail!("{}", missing_key_file(args));
    }
    read_key_file(&args.master_key_file)
}

/// What to do about a missing key file: `latchkey init` creates it (mode 0600) with a new
/// store; for an existing store a new key would not open it, so point at the right one.
fn missing_key_file(args: &StoreArgs) -> String {
    let file = args.master_key_file.display();
    if args.store.join("conf").exists() {
        format!(
            "the master key file {file} does not exist, but the store {} does: a new key would not open it; point --master-key-file (LATCHKEY_MASTER_KEY_FILE) at the store's key file, or set {MASTER_KEY_ENV}",
            args.store.display()
        )
    } else {
        format!(
            "the master key file {file} does not exist: run `latchkey init` to create the store and the key file (mode 0600), or set {MASTER_KEY_ENV}"
        )
    }
}

/// Reads a key file, refusing one that group or others may access, or another user's (as
/// ssh refuses such a private key): the error names the `chmod 600`/`chown` that fixes it.
fn read_key_file(path: &Path) -> Result<MasterKey> {
    check_private_file(path).context("refusing the master key file")?;
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the master key file {}", path.display()))?;
    let key = zeroize::Zeroizing::new(bytes);
    MasterKey::from_bytes(&key)
        .with_context(|| format!("reading the master key file {}", path.display()))
}

/// Writes `key` to a new file readable only by its owner. Refuses to overwrite.
fn write_key_file(path: &Path, key: &MasterKey) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating the master key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    f.write_all(key.to_hex().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// `latchkey init`: the key file (0600, in a directory created 0700) unless
/// LATCHKEY_MASTER_KEY is set or the file exists, and the store directory (0700).
pub fn init(args: &StoreArgs) -> Result<()> {
    if args.store.join("conf").exists() {
        bail!(
            "a Latchkey store already exists at {}; refusing to overwrite it",
            args.store.display()
        );
    }
    let (master, source) = if std::env::var_os(MASTER_KEY_ENV).is_some() {
        (load_master(args)?, format!("the key in {MASTER_KEY_ENV}"))
    } else if args.master_key_file.exists() {
        (
            read_key_file(&args.master_key_file)?,
            format!("the existing key file {}", args.master_key_file.display()),
        )
    } else {
        let key = MasterKey::generate().context("generating a master key")?;
        write_key_file(&args.master_key_file, &key)?;
        (
            key,
            format!(
                "a new master key written to {} (mode 0600)",
                args.master_key_file.display()
            ),
        )
    };
    SecretStore::init(&args.store, &master)
        .with_context(|| format!("creating the store at {}", args.store.display()))?;
    println!(
        "initialised store {} sealed with {source}",
        args.store.display()
    );
    println!("keep the master key secret and backed up: without it the store cannot be opened");
    Ok(())
}

/// Opens the store with the configured master key.
pub fn open_store(args: &StoreArgs) -> Result<SecretStore> {
    let master = load_master(args)?;
    SecretStore::open(&args.store, &master)
        .with_context(|| format!("opening the store at {}", args.store.display()))
}

/// `latchkey store rotate-master`.
pub fn rotate_master(args: &StoreArgs, new_key_file: &Path) -> Result<()> {
    let old = load_master(args)?;
    let mut store = SecretStore::open(&args.store, &old)
        .with_context(|| format!("opening the store at {}", args.store.display()))?;
    let new = if new_key_file.exists() {
        read_key_file(new_key_file)?
    } else {
        let key = MasterKey::generate().context("generating a master key")?;
        write_key_file(new_key_file, &key)?;
        key
    };
    let actor = std::env::var("LATCHKEY_ACTOR")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(crate::os_user);
    store
        .rotate_master(&old, &new, &actor)
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
