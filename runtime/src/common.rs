//! What several commands share: where the store is, who acts, the compiled-component
//! cache, the async runtime, and the exit code of a failed step.

use crate::master_key;
use anyhow::{Context, Result};
use clap::Args;
use latchkey_host::Location;
use latchkey_host::{Latchkey, Options, Principal, Role};
use std::path::{Path, PathBuf};

/// Exit code for a step that returned an error, trapped or hit a limit (1 is any other
/// failure, 2 a usage error).
pub use latchkey_cli::EXIT_STEP_FAILED;

/// Where the store and the master key are.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Store: a directory (sled, one process at a time), or a PostgreSQL URL
    /// (`postgres://user:password@host:port/db`) that several hosts share; a database
    /// needs `latchkey store migrate` once before `latchkey init`.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_STORE",
        default_value = ".latchkey/store",
        value_name = "DIR|URL"
    )]
    pub store: Location,
    /// Master key file (64 hex characters). Ignored when LATCHKEY_MASTER_KEY is set.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_MASTER_KEY_FILE",
        default_value = ".latchkey/master.key"
    )]
    pub master_key_file: PathBuf,
    #[command(flatten)]
    pub transit: TransitArgs,
    /// Hours a static value stays a scrub pattern after `secret rotate` or `secret set`
    /// replaces it (an upstream may still echo the old value); 0 keeps none. The old value
    /// stays sealed in the store that long and is never injected.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_ROTATION_GRACE_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(0..=8760),
        value_name = "HOURS"
    )]
    pub rotation_grace_hours: u64,
}

/// An OpenBao (or Vault) Transit key that wraps the data key instead of a master key
/// (so the master key never exists on this host).
#[derive(Args, Debug, Clone, Default)]
pub struct TransitArgs {
    /// Address of the OpenBao/Vault server (`https://bao.internal:8200`; plain http only to
    /// a loopback address; redirects are refused). With --transit-key, the data key is
    /// wrapped by Transit and the master key file is not used.
    #[arg(long, global = true, env = "LATCHKEY_TRANSIT_ADDR", value_name = "URL")]
    pub transit_addr: Option<String>,
    /// Name of the Transit key that wraps the data key.
    #[arg(long, global = true, env = "LATCHKEY_TRANSIT_KEY", value_name = "NAME")]
    pub transit_key: Option<String>,
    /// Mount path of the Transit secrets engine.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_TRANSIT_MOUNT",
        default_value = "transit",
        value_name = "PATH"
    )]
    pub transit_mount: String,
    /// File holding the token for Transit (mode 0600). The token may instead be given in
    /// LATCHKEY_TRANSIT_TOKEN, which takes precedence; never on the command line.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_TRANSIT_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub transit_token_file: Option<PathBuf>,
}

impl StoreArgs {
    /// Opens the store with the configured master key.
    pub fn open(&self, options: Options) -> Result<Latchkey> {
        let key = master_key::provider(self)?;
        let latchkey = Latchkey::open_at(&self.store, key.wrapper(), options)?;
        latchkey.set_rotation_grace(std::time::Duration::from_secs(
            self.rotation_grace_hours * 3600,
        ));
        Ok(latchkey)
    }

    /// `cache` beside the store directory (`.latchkey/cache`).
    pub fn default_cache_dir(&self) -> PathBuf {
        self.local_dir().join("cache")
    }

    /// Where this host keeps its own files: beside a store directory, or `.latchkey` for a
    /// database.
    pub fn local_dir(&self) -> PathBuf {
        match self.store.dir() {
            Some(dir) => dir.parent().unwrap_or(Path::new(".")).to_owned(),
            None => PathBuf::from(".latchkey"),
        }
    }

    /// Whether a sled store exists at the store directory (never for a database).
    pub fn sled_store_exists(&self) -> bool {
        self.store.dir().is_some_and(|d| d.join("conf").exists())
    }
}

/// The acting identity of a management command.
#[derive(Args, Debug, Clone)]
pub struct ActorArgs {
    /// Acting identity recorded in the secret's metadata and the audit trail (default: the
    /// OS user).
    #[arg(long = "as", value_name = "NAME", env = "LATCHKEY_ACTOR")]
    pub actor: Option<String>,
}

impl ActorArgs {
    /// The principal acting: whoever holds the master key administers the store.
    pub fn principal(&self) -> Result<Principal> {
        let name = self.actor.clone().unwrap_or_else(os_user);
        operator(&name).context("--as")
    }
}

/// The operator of a local store as a principal: holding the master key, they are admin.
pub fn operator(name: &str) -> Result<Principal> {
    Ok(Principal::new(name, Role::Admin)?)
}

/// Milliseconds since the Unix epoch: when a local run started and ended, as the API's
/// run records say it.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The OS user (`$USER`, `$LOGNAME`), else `operator`.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned())
}

/// Where compiled components are cached.
#[derive(Default, Args, Debug, Clone)]
pub struct CacheArgs {
    /// Directory of the compiled-component cache (`latchkey compile` warms it; a run that
    /// compiles a step first says so on stderr). Default: `cache` beside the store directory
    /// (`.latchkey/cache`).
    #[arg(long, env = "LATCHKEY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the step in memory; neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache directory to use, `None` with `--no-cache`.
    pub fn dir(&self, store: &StoreArgs) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        Some(
            self.cache_dir
                .clone()
                .unwrap_or_else(|| store.default_cache_dir()),
        )
    }
}

/// How a host builds agent-written scripts (`latchkey serve`, `latchkey mcp`).
#[derive(Args, Debug, Clone)]
pub struct ScriptArgs {
    /// The JavaScript SDK's directory (`guest-sdk/js`, after `npm ci` in it): with it,
    /// this host builds the scripts agents send to the MCP tool `run_script`, once an
    /// admin has enabled them (`latchkey scripts enable`). Without it, `run_script` is
    /// refused here. Needs Node.js on PATH.
    #[arg(long, env = "LATCHKEY_SCRIPT_SDK", value_name = "DIR")]
    pub script_sdk: Option<PathBuf>,
    /// The longest a script's build may take, in seconds; it is killed after.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub script_build_secs: u64,
    /// Largest script source, in KiB.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub script_max_kib: usize,
    /// Built scripts kept loaded on this host (each tens of MB), least recently used out.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub script_cache: usize,
}

impl ScriptArgs {
    pub fn options(&self) -> anyhow::Result<latchkey_host::ScriptOptions> {
        let in_range = |flag: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                anyhow::bail!("{flag} must be between 1 and {max} (got {v})");
            }
            Ok(v)
        };
        if let Some(dir) = &self.script_sdk
            && !dir.join("bin/latchkey-build.js").is_file()
        {
            anyhow::bail!(
                "--script-sdk {}: not the JavaScript SDK (it has no bin/latchkey-build.js)",
                dir.display()
            );
        }
        Ok(latchkey_host::ScriptOptions {
            sdk: self.script_sdk.clone(),
            build_timeout: std::time::Duration::from_secs(in_range(
                "--script-build-secs",
                self.script_build_secs as usize,
                3600,
            )? as u64),
            max_source_bytes: in_range("--script-max-kib", self.script_max_kib, 16 << 10)? << 10,
            max_cached: in_range("--script-cache", self.script_cache, 1024)?,
        })
    }
}

/// A multi-thread tokio runtime (2 workers) for the sandbox and its HTTP client.
pub fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Instance slots the pooling allocator reserves for one `latchkey` process (0: no
/// pooling). Measured in bench/RESULTS.md: for one step per process, reserving a pool
/// costs more at start than it saves on the single instantiation.
const POOL_INSTANCES: u32 = 0;

/// The runtime configuration of every command that loads steps (`run`, `check`,
/// `compile`), so that they agree on the engine and share cache entries.
pub fn runtime_config(limits: latchkey_host::Limits) -> latchkey_host::RuntimeConfig {
    latchkey_host::RuntimeConfig {
        limits,
        pool_instances: POOL_INSTANCES,
        ..Default::default()
    }
}

/// The invoking user of a workflow: `--user`, else the OS user; checked like a scope name.
pub fn invoking_user(arg: Option<&String>) -> Result<String> {
    let user = arg.cloned().unwrap_or_else(os_user);
    latchkey_host::check_name(latchkey_host::NameKind::User, &user).context("--user")?;
    Ok(user)
}

/// When audit records reach the disk.
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurabilityArgs {
    /// Sync the audit trail to disk before every request that carries a credential, so that
    /// not even a power failure loses the record of a request that was sent. Without it, the
    /// record is still written before the request leaves (a killed process loses nothing)
    /// and is synced within 50 ms, one sync shared by every run in that window.
    #[arg(long, env = "LATCHKEY_STRICT_DURABILITY")]
    pub strict_durability: bool,
}

impl DurabilityArgs {
    /// The library setting the flag selects.
    pub fn durability(self) -> latchkey_host::Durability {
        if self.strict_durability {
            latchkey_host::Durability::Strict
        } else {
            latchkey_host::Durability::Grouped
        }
    }
}

/// The operator's grants of non-public networks to fetches.
#[derive(Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// Let fetches reach the non-public network CIDR (`10.0.0.0/8`, `127.0.0.1/32`,
    /// `fd00::/8`). Repeatable, at most 32. Cloud metadata endpoints stay refused whatever is
    /// granted. A secret whose binding has `--allow-internal` needs no grant.
    #[arg(long = "allow-internal", value_name = "CIDR")]
    pub allow_internal: Vec<String>,
    /// Short for `--allow-internal 127.0.0.0/8 --allow-internal ::1/128`: loopback only
    /// (local test upstreams), not other private networks.
    #[arg(long)]
    pub allow_private_network: bool,
}

impl NetworkArgs {
    /// The address policy the flags grant.
    pub fn address_policy(&self) -> Result<latchkey_host::AddressPolicy> {
        use latchkey_host::AddressPolicy;
        let mut grants = self
            .allow_internal
            .iter()
            .map(|c| {
                c.trim().parse().map_err(|e| {
                    anyhow::anyhow!(
                        "--allow-internal {c:?}: {e} (expected a CIDR such as 10.0.0.0/8)"
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if self.allow_private_network {
            grants.extend(AddressPolicy::loopback().grants());
        }
        Ok(AddressPolicy::with_grants(grants)?)
    }
}
