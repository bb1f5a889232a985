//! `latchkey component add` and `latchkey workflow add`: code registered on a server
//! (admins only), so that runs can name it.

use crate::json::{self, JsonArgs};
use crate::remote::{Remote, encode};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use latchkey_server::api::{ComponentView, WorkflowView};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ComponentCommand {
    /// Upload a component (.wasm); the server compiles and checks it once. Runs name it by
    /// NAME or by its `sha256:` digest.
    Add {
        /// The component.
        file: PathBuf,
        /// A name to run it by (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: Option<String>,
    },
    /// List registered components.
    List {
        #[command(flatten)]
        json: JsonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowCommand {
    /// Register a manifest under its `name`; each step's `component` names a registered
    /// component (name or digest).
    Add {
        /// The manifest (`workflow.toml`).
        file: PathBuf,
    },
    /// List registered workflows.
    List {
        #[command(flatten)]
        json: JsonArgs,
    },
}

fn server(r: Option<&Remote>) -> Result<&Remote> {
    r.context(
        "this command talks to a server: give --server URL (or LATCHKEY_SERVER) and LATCHKEY_TOKEN",
    )
}

impl ComponentCommand {
    pub fn execute(self, r: Option<&Remote>) -> Result<()> {
        let r = server(r)?;
        match self {
            ComponentCommand::Add { file, name } => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                if !bytes.starts_with(b"\0asm") {
                    bail!("{} is not a WebAssembly component", file.display());
                }
                let path = match &name {
                    Some(n) => format!("/v1/components?name={}", encode(n)),
                    None => "/v1/components".to_owned(),
                };
                let c: ComponentView = r.upload(
                    &format!("registering {}", file.display()),
                    reqwest::Method::POST,
                    &path,
                    "application/wasm",
                    bytes,
                )?;
                println!(
                    "registered {} ({} bytes){}",
                    c.digest,
                    c.size,
                    c.name.map(|n| format!(" as {n}")).unwrap_or_default()
                );
            }
            ComponentCommand::List { json } => {
                let list: Vec<ComponentView> = r.get("listing components", "/v1/components")?;
                if json.json {
                    return json::lines(list);
                }
                for c in list {
                    println!("{} {:>9} {}", c.digest, c.size, c.name.unwrap_or_default());
                }
            }
        }
        Ok(())
    }
}

impl WorkflowCommand {
    pub fn execute(self, r: Option<&Remote>) -> Result<()> {
        let r = server(r)?;
        match self {
            WorkflowCommand::Add { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let wf = latchkey_host::Workflow::parse(&text, &file)?;
                let v: WorkflowView = r.upload(
                    &format!("registering workflow {}", wf.name),
                    reqwest::Method::PUT,
                    &format!("/v1/workflows/{}", encode(&wf.name)),
                    "application/toml",
                    text.into_bytes(),
                )?;
                println!("registered workflow {} ({} step(s))", v.name, v.steps.len());
                for s in v.steps {
                    println!("  {} -> {}", s.name, s.component);
                }
            }
            WorkflowCommand::List { json } => {
                let list: Vec<WorkflowView> = r.get("listing workflows", "/v1/workflows")?;
                if json.json {
                    return json::lines(list);
                }
                for w in list {
                    println!(
                        "{} (workspace {}, {} step(s))",
                        w.name,
                        w.workspace,
                        w.steps.len()
                    );
                }
            }
        }
        Ok(())
    }
}
