//! The master key: from `LATCHKEY_MASTER_KEY` or a private key file; `latchkey init`
//! and `latchkey store rotate-master` create key files.

use crate::common::StoreArgs;
use anyhow::{Context, Result, bail};
use latchkey_host::store::{MasterKey, check_private_file, create_private_dir};
use std::io::Write;
use std::path::Path;

/// Environment variable holding the master key as 64 hex characters.
pub const MASTER_KEY_ENV: &str = "LATCHKEY_MASTER_KEY";

/// The master key: LATCHKEY_MASTER_KEY if set, else the key file.
pub fn load(args: &StoreArgs) -> Result<MasterKey> {
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
pub fn read_key_file(path: &Path) -> Result<MasterKey> {
    check_private_file(path).context("refusing the master key file")?;
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the master key file {}", path.display()))?;
    let key = zeroize::Zeroizing::new(bytes);
    MasterKey::from_bytes(&key)
        .with_context(|| format!("reading the master key file {}", path.display()))
}

/// Writes `key` to a new file readable only by its owner. Refuses to overwrite.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<()> {
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
