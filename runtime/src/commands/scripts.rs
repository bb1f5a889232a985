//! `latchkey scripts …`: whether agents may run steps they wrote (the MCP tool
//! `run_script`), and the only keys such a script may ask for. An admin's decision, kept
//! in the store: on the local store, or on a server with `--server`.

use crate::common::{ActorArgs, StoreArgs};
use crate::json::{self, JsonArgs};
use crate::remote::Remote;
use anyhow::Result;
use clap::Subcommand;
use latchkey_host::{Options, ScriptPolicy};

#[derive(Subcommand, Debug)]
#[command(after_help = SCRIPTS_HELP)]
pub enum ScriptsCommand {
    /// Print the policy: whether scripts run, and the keys they may ask for.
    Show {
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        json: JsonArgs,
    },
    /// Let agents run scripts that use at most the keys given (each script's allowlist is
    /// the keys it asks for, all of which must be among these).
    Enable {
        /// The keys scripts may ask for, comma-separated (e.g. SLACK_TOKEN,GITHUB_TOKEN).
        /// Empty (`--max-keys ''`): scripts run, keyless.
        #[arg(long, value_delimiter = ',', value_name = "KEYS", required = true, num_args = 0..)]
        max_keys: Vec<String>,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        json: JsonArgs,
    },
    /// Turn agent-written scripts off (the default).
    Disable {
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        json: JsonArgs,
    },
}

const SCRIPTS_HELP: &str = "\
A script is a JavaScript or TypeScript step an agent sends to the MCP tool `run_script`
with the keys it wants. The host builds it (only `latchkey-sdk` may be imported) and runs
it in the sandbox: it can use those keys in requests to where each is bound, and can never
read, return, log or send them anywhere else. Hosts build scripts only when started with
--script-sdk (the JavaScript SDK's directory, after `npm ci` in it).";

impl ScriptsCommand {
    pub fn execute(self, store: &StoreArgs, server: Option<&Remote>) -> Result<()> {
        let (asked, as_json) = match &self {
            ScriptsCommand::Show { json, .. } => (None, *json),
            ScriptsCommand::Enable { max_keys, json, .. } => (
                Some(ScriptPolicy {
                    enabled: true,
                    max_keys: max_keys
                        .iter()
                        .map(|k| k.trim().to_owned())
                        .filter(|k| !k.is_empty())
                        .collect(),
                }),
                *json,
            ),
            ScriptsCommand::Disable { json, .. } => (Some(ScriptPolicy::default()), *json),
        };
        let policy = match server {
            Some(r) => match asked {
                None => r.get::<ScriptPolicy>("reading the script policy", "/v1/scripts")?,
                Some(p) => r.call(
                    "setting the script policy",
                    reqwest::Method::PUT,
                    "/v1/scripts",
                    Some(&p),
                )?,
            },
            None => {
                let latchkey = store.open(Options::default())?;
                let by = self.actor().principal()?;
                match asked {
                    None => latchkey.script_policy(&by)?,
                    Some(p) => latchkey.set_script_policy(&by, p)?,
                }
            }
        };
        print_policy(&policy, as_json)
    }

    fn actor(&self) -> &ActorArgs {
        match self {
            ScriptsCommand::Show { actor, .. }
            | ScriptsCommand::Enable { actor, .. }
            | ScriptsCommand::Disable { actor, .. } => actor,
        }
    }
}

fn print_policy(policy: &ScriptPolicy, as_json: JsonArgs) -> Result<()> {
    if as_json.json {
        return json::document(policy);
    }
    match (policy.enabled, policy.max_keys.as_slice()) {
        (false, _) => println!("agent-written scripts are off"),
        (true, []) => println!("agent-written scripts are on, keyless (no key may be asked for)"),
        (true, keys) => println!(
            "agent-written scripts are on; they may ask for: {}",
            keys.join(", ")
        ),
    }
    Ok(())
}
