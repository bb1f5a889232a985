//! `latchkey secret …`: write-only secret management.

use crate::cli::{KeyArgs, ListArgs, RotateArgs, ScopeArgs, SecretCommand, SetArgs, StoreArgs};
use crate::keys;
use anyhow::{Context, Result, bail};
use latchkey_host::policy::{BindingSpec, HostPattern, InjectLocation};
use latchkey_host::secret::{CredentialKey, MAX_VALUE_BYTES, SecretValue};
use latchkey_host::store::{Scope, SecretMeta, SecretSpec};
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

pub fn run(store_args: &StoreArgs, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Set(args) => set(store_args, args),
        SecretCommand::Rotate(args) => rotate(store_args, args),
        SecretCommand::Rm(args) => rm(store_args, args),
        SecretCommand::List(args) => list(store_args, args),
    }
}

/// Parses `--scope`; `workspace` alone is `workspace:default`.
pub fn parse_scope(s: &ScopeArgs) -> Result<Scope> {
    let text = if s.scope == "workspace" {
        "workspace:default"
    } else {
        s.scope.as_str()
    };
    Ok(Scope::parse(text)?)
}

fn actor(k: &KeyArgs) -> String {
    k.actor.clone().unwrap_or_else(crate::os_user)
}

/// Reads the value from stdin, or a hidden prompt on a terminal. Never from argv.
fn read_value(key: &CredentialKey) -> Result<SecretValue> {
    let mut bytes = Zeroizing::new(Vec::new());
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("value for {key} (input hidden): "))
                .context("reading the value")?,
        );
        bytes.extend_from_slice(typed.as_bytes());
    } else {
        // Read one byte past the limit so an oversized value is reported, not truncated.
        std::io::stdin()
            .lock()
            .take(MAX_VALUE_BYTES as u64 + 3)
            .read_to_end(&mut bytes)
            .context("reading the value from stdin")?;
        // `echo "$TOKEN" |` adds a newline that is not part of the token.
        let keep = if bytes.ends_with(b"\r\n") {
            bytes.len() - 2
        } else if bytes.ends_with(b"\n") {
            bytes.len() - 1
        } else {
            bytes.len()
        };
        bytes.truncate(keep);
    }
    SecretValue::new(bytes.to_vec()).with_context(|| format!("refusing the value for {key}"))
}

fn set(store_args: &StoreArgs, args: SetArgs) -> Result<()> {
    // Validate everything before reading the value or touching the store.
    let key = CredentialKey::new(&args.key.key)?;
    let scope = parse_scope(&args.key.scope)?;
    let hosts = args
        .allow_host
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    let locations = args
        .inject
        .iter()
        .map(|l| InjectLocation::parse(l))
        .collect::<Result<Vec<_>, _>>()?;
    let binding = BindingSpec {
        hosts,
        locations,
        allow_http: args.allow_http,
        methods: args.methods,
        path_prefixes: args.path_prefixes,
        allow_internal: args.allow_internal,
    }
    .build()?;
    let store = keys::open_store(store_args)?;
    let value = read_value(&key)?;
    let meta = store
        .set(
            &scope,
            &key,
            value,
            SecretSpec {
                integration: args.integration,
                binding,
                allow_weak_value: args.allow_weak_value,
            },
            &actor(&args.key),
        )
        .with_context(|| format!("storing {key} in {scope}"))?;
    println!(
        "stored {} in {} (version {})",
        meta.key, meta.scope, meta.version
    );
    Ok(())
}

fn rotate(store_args: &StoreArgs, rotate: RotateArgs) -> Result<()> {
    let args = rotate.key;
    let key = CredentialKey::new(&args.key)?;
    let scope = parse_scope(&args.scope)?;
    let store = keys::open_store(store_args)?;
    if store.meta(&scope, &key)?.is_none() {
        bail!("no secret {key} in scope {scope}; create it with `latchkey secret set`");
    }
    let value = read_value(&key)?;
    let meta = store
        .rotate(&scope, &key, value, rotate.allow_weak_value, &actor(&args))
        .with_context(|| format!("rotating {key} in {scope}"))?;
    println!(
        "rotated {} in {} (now version {})",
        meta.key, meta.scope, meta.version
    );
    Ok(())
}

fn rm(store_args: &StoreArgs, args: KeyArgs) -> Result<()> {
    let key = CredentialKey::new(&args.key)?;
    let scope = parse_scope(&args.scope)?;
    let store = keys::open_store(store_args)?;
    let meta = store.delete(&scope, &key, &actor(&args))?;
    println!("deleted {} from {}", meta.key, meta.scope);
    Ok(())
}

fn list(store_args: &StoreArgs, args: ListArgs) -> Result<()> {
    let scope = match &args.scope {
        Some(s) => Some(parse_scope(&ScopeArgs { scope: s.clone() })?),
        None => None,
    };
    let store = keys::open_store(store_args)?;
    let entries = store.list(scope.as_ref())?;
    if args.json {
        for e in &entries {
            match e {
                Ok(m) => println!("{}", serde_json::to_string(m)?),
                Err(err) => println!("{}", serde_json::json!({ "error": err.to_string() })),
            }
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no secrets{}",
            scope.map(|s| format!(" in {s}")).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<28} {:<10} {:>3}  {:<20} {:<36} HOSTS",
        "KEY", "SCOPE", "TYPE", "VER", "UPDATED", "INJECT"
    );
    for e in entries {
        match e {
            Ok(m) => println!("{}", row(&m)),
            Err(err) => println!("DAMAGED: {err}"),
        }
    }
    Ok(())
}

fn row(m: &SecretMeta) -> String {
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.updated_at_ms),
    );
    let locations: Vec<String> = m
        .binding
        .locations
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut hosts: Vec<String> = m.binding.hosts.iter().map(ToString::to_string).collect();
    if m.binding.allow_http {
        hosts.push("(http allowed)".into());
    }
    // The rest of the binding and the weak-value override, so that `list` shows everything
    // that decides where a value may go.
    if !m.binding.methods.is_empty() {
        hosts.push(format!("methods {}", m.binding.methods.join("|")));
    }
    if !m.binding.path_prefixes.is_empty() {
        hosts.push(format!("paths {}", m.binding.path_prefixes.join("|")));
    }
    if m.binding.allow_internal {
        hosts.push("(internal allowed)".into());
    }
    if m.weak_value_override {
        hosts.push("(weak value allowed)".into());
    }
    format!(
        "{:<28} {:<28} {:<10} {:>3}  {:<20} {:<36} {}",
        m.key.as_str(),
        m.scope.to_string(),
        m.integration,
        m.version,
        format!("{when} by {}", m.updated_by),
        locations.join(","),
        hosts.join(",")
    )
}
