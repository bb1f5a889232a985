//! Master key handling and opening the store.

use crate::cli::StoreArgs;
use anyhow::{Context, Result, bail};
use latchkey_host::store::{MasterKey, SecretStore};
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
    read_key_file(&args.master_key_file)
}

fn read_key_file(path: &Path) -> Result<MasterKey> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the master key file {} (run `latchkey init`, or set {MASTER_KEY_ENV})",
            path.display()
        )
    })?;
    let key = zeroize::Zeroizing::new(bytes);
    MasterKey::from_bytes(&key)
        .with_context(|| format!("reading the master key file {}", path.display()))
}

/// Writes `key` to a new file readable only by its owner. Refuses to overwrite.
fn write_key_file(path: &Path, key: &MasterKey) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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

/// `latchkey init`.
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
    std::fs::create_dir_all(&args.store)
        .with_context(|| format!("creating {}", args.store.display()))?;
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
    store
        .rotate_master(&old, &new)
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
