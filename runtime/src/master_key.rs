//! The master key: from `LATCHKEY_MASTER_KEY` or a private key file; `latchkey init`
//! and `latchkey store rotate-master` create key files.

use crate::common::StoreArgs;
use anyhow::{Context, Result, bail};
use latchkey_host::{KeyWrapper, MasterKey, TransitKey, check_private_file, create_private_dir};
use std::io::Write;
use std::path::Path;

/// Environment variable holding the master key as 64 hex characters.
pub const MASTER_KEY_ENV: &str = "LATCHKEY_MASTER_KEY";

/// Environment variable holding the Transit token.
pub const TRANSIT_TOKEN_ENV: &str = "LATCHKEY_TRANSIT_TOKEN";

/// What wraps the store's data key.
pub enum Provider {
    /// The master key (LATCHKEY_MASTER_KEY or the key file).
    Local(MasterKey),
    /// An OpenBao/Vault Transit key.
    Transit(TransitKey),
}

impl Provider {
    pub fn wrapper(&self) -> &dyn KeyWrapper {
        match self {
            Provider::Local(k) => k,
            Provider::Transit(t) => t,
        }
    }
}

/// The Transit key if --transit-key is given, else the master key.
pub fn provider(args: &StoreArgs) -> Result<Provider> {
    match transit(args)? {
        Some(t) => Ok(Provider::Transit(t)),
        None => Ok(Provider::Local(load(args)?)),
    }
}

/// The configured Transit key, if any: --transit-key with --transit-addr and a token from
/// LATCHKEY_TRANSIT_TOKEN or --transit-token-file.
pub fn transit(args: &StoreArgs) -> Result<Option<TransitKey>> {
    let t = &args.transit;
    let Some(key) = t.transit_key.as_deref().filter(|k| !k.is_empty()) else {
        if t.transit_addr.is_some() {
            bail!(
                "--transit-addr is set but --transit-key (LATCHKEY_TRANSIT_KEY) is not: name the Transit key that wraps the data key"
            );
        }
        return Ok(None);
    };
    let Some(addr) = t.transit_addr.as_deref().filter(|a| !a.is_empty()) else {
        bail!(
            "--transit-key needs --transit-addr (LATCHKEY_TRANSIT_ADDR), the OpenBao/Vault server's address"
        );
    };
    if !(addr.starts_with("http://") || addr.starts_with("https://")) {
        bail!("--transit-addr {addr:?} must start with http:// or https://");
    }
    let token = match std::env::var(TRANSIT_TOKEN_ENV) {
        Ok(token) => zeroize::Zeroizing::new(token),
        Err(_) => {
            let Some(file) = &t.transit_token_file else {
                bail!(
                    "no Transit token: set {TRANSIT_TOKEN_ENV} or --transit-token-file (LATCHKEY_TRANSIT_TOKEN_FILE)"
                );
            };
            check_private_file(file).context("refusing the Transit token file")?;
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(file).with_context(|| {
                    format!("reading the Transit token file {}", file.display())
                })?);
            zeroize::Zeroizing::new(text.trim().to_owned())
        }
    };
    if token.is_empty() {
        bail!("the Transit token is empty");
    }
    Ok(Some(TransitKey::new(addr, &t.transit_mount, key, token)?))
}

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
    if args.sled_store_exists() {
        format!(
            "the master key file {file} does not exist, but the store {} does: a new key would not open it; point --master-key-file (LATCHKEY_MASTER_KEY_FILE) at the store's key file, or set {MASTER_KEY_ENV}",
            args.store
        )
    } else if args.store.dir().is_none() {
        format!(
            "the master key file {file} does not exist: every host of the shared store {} needs the key the store was initialised with (copy it with mode 0600, or set {MASTER_KEY_ENV}); `latchkey init` creates one for a new store",
            args.store
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
