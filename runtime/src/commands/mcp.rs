//! `latchkey mcp`: the Model Context Protocol over stdio, for a desktop agent that starts
//! it (see the `latchkey-server` crate's `mcp` module, which `/mcp` on `latchkey serve`
//! shares).

use crate::common::{ActorArgs, CacheArgs, DurabilityArgs, NetworkArgs, ScriptArgs, StoreArgs};
use crate::limits::{self, LimitArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_host::RuntimeConfig;
use latchkey_host::{Options, Principal, Role};
use latchkey_server::mcp::McpServer;

/// Speaks MCP on stdin and stdout until the client closes them; logs go to stderr.
#[derive(Args, Debug)]
#[command(after_help = MCP_HELP)]
pub struct McpCommand {
    #[command(flatten)]
    pub actor: ActorArgs,
    /// The role the agent acts with: `runner` (runs tools only), `member` (also reads the
    /// secrets' metadata) or `admin`. Holding the master key you could act as admin; a
    /// narrower role keeps an agent to what it needs.
    #[arg(
        long,
        env = "LATCHKEY_MCP_ROLE",
        default_value = "runner",
        value_name = "ROLE"
    )]
    pub role: String,
    /// Largest tool input, in KiB of JSON (as `latchkey serve --max-json-kib`).
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub max_input_kib: usize,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub durability: DurabilityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub scripts: ScriptArgs,
}

const MCP_HELP: &str = "\
Tools are the workflows and named components registered in the store (registered through
`latchkey serve`: `latchkey --server URL component add`, `workflow add`). A tool
call runs as the acting principal exactly as `POST /v1/runs` does: keys are injected by the
host, never seen by the step or the agent, and the output is scrubbed. Resources:
latchkey://runs, latchkey://runs/{id}, and latchkey://secrets (metadata only; member or admin).

A desktop agent's configuration (the store directory and master key as for any command):
  {\"mcpServers\": {\"latchkey\": {\"command\": \"latchkey\",
     \"args\": [\"--store\", \"/home/me/.latchkey/store\", \"--master-key-file\",
              \"/home/me/.latchkey/master.key\", \"mcp\", \"--as\", \"me\"]}}}

A sled store is used by one process at a time: stop `latchkey serve` on it first, or share
a PostgreSQL store. For remote agents, `latchkey serve` answers MCP at /mcp with bearer tokens.";

impl McpCommand {
    pub fn execute(self, store: &StoreArgs) -> Result<()> {
        let role = Role::parse(&self.role)
            .with_context(|| format!("--role {:?}: use runner, member or admin", self.role))?;
        let name = self.actor.principal()?;
        let principal = Principal::new(name.name(), role).context("--as")?;
        if self.max_input_kib == 0 || self.max_input_kib > 64 << 10 {
            bail!(
                "--max-input-kib must be between 1 and {} (got {})",
                64 << 10,
                self.max_input_kib
            );
        }
        let options = Options {
            runtime: RuntimeConfig {
                limits: limits::limits(&self.limits)?,
                address_policy: self.network.address_policy()?,
                pool_instances: 0,
                durability: self.durability.durability(),
            },
            cache_dir: self.cache.dir(store),
            scripts: self.scripts.options()?,
            runs: Default::default(),
        };
        let latchkey = std::sync::Arc::new(store.open(options)?);
        latchkey.open_store_now()?;
        let server = McpServer::local(latchkey, principal, self.max_input_kib << 10);
        crate::common::async_runtime()?
            .block_on(latchkey_server::mcp::serve_stdio(server))
            .context("latchkey mcp")
    }
}
