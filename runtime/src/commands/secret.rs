//! `latchkey secret …`: write-only secret management.

use crate::common::{ActorArgs, StoreArgs};
use crate::remote::{Remote, encode};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use latchkey_host::Options;
use latchkey_host::{BindingSpec, Grant, HostPattern, InjectLocation, Quota, TokenEndpoint};
use latchkey_host::{CredentialKey, MAX_VALUE_BYTES, SecretValue};
use latchkey_host::{CredentialKind, Scope, SecretMeta, SecretSpec};
use latchkey_server::api;
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Store a secret (create, or replace value and binding). The value is read from
    /// stdin (one trailing newline removed) or, on a terminal, from a hidden prompt.
    ///
    /// Example: printf %s "$TOKEN" | latchkey secret set SLACK_TOKEN --allow-host slack.com --inject header:Authorization
    Set(Box<SetArgs>),
    /// Replace the value of an existing secret, keeping its binding. Takes effect at the
    /// next call of any running or future step.
    Rotate(RotateArgs),
    /// Delete a secret. Steps using it fail at their next call.
    Rm(KeyArgs),
    /// List secrets: names and metadata, never values.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Credential key: A-Z, 0-9 and _ (e.g. SLACK_TOKEN).
    pub key: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// Scope: platform, workspace:W, workflow:W/F, user:U, user:U@W/F or builder:B@W/F.
    /// `workspace` alone means workspace:default.
    #[arg(long, default_value = "workspace:default")]
    pub scope: String,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// A host the value may be sent to: `api.example.com`, `*.example.com` (exactly one
    /// label more, not the apex), an IP literal, optionally `:PORT` or `:*`. Without a
    /// port only the scheme's default port matches. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]", required = true)]
    pub allow_host: Vec<String>,
    /// Where in a request the value may be injected: `header:NAME`, `query:NAME`,
    /// `basic-auth`, `body:json:/POINTER` or `body:form:NAME` (a named body field; a bare
    /// `body` is refused). Repeatable.
    #[arg(long = "inject", value_name = "LOCATION", required = true)]
    pub inject: Vec<String>,
    /// Also allow plain http:// (loopback tests, in-cluster services). Off by default.
    #[arg(long)]
    pub allow_http: bool,
    /// Integration type; only steps declaring it may use the secret.
    #[arg(long, default_value = "http")]
    pub integration: String,
    /// An HTTP method the value may be sent with (GET, POST, ...). Repeatable. Default:
    /// any method.
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// A URL path prefix the value may be sent to (`/api/v2`; matched at segment
    /// boundaries). Repeatable. Default: any path.
    #[arg(long = "path-prefix", value_name = "PREFIX")]
    pub path_prefixes: Vec<String>,
    /// Let the value be sent to non-public addresses (loopback, private, link-local,
    /// unique-local); never to cloud metadata endpoints. Off by default.
    #[arg(long)]
    pub allow_internal: bool,
    /// Store the value even if it looks easy to guess (short, few distinct characters, a
    /// placeholder). Recorded in the secret's metadata and shown by `secret list`.
    #[arg(long)]
    pub allow_weak_value: bool,
    /// What the value is: `static` (sent as it is, into the places --inject names);
    /// `hmac-sha256` (a signing key, never sent: a step asks for the HMAC-SHA256 of the
    /// body it sends, and the host writes it into a header: or query: place --inject
    /// names); `aws-sigv4` (JSON `{"access_key_id", "secret_access_key",
    /// "session_token"?}`: the host signs each request for --aws-region and --aws-service
    /// and writes `authorization`; use --inject header:authorization); `jwt-rs256` or
    /// `jwt-es256` (a PEM private key: the host mints a JWT with the --jwt-* claims at each
    /// request and writes it where the step puts the credential); `oauth2` (an OAuth2
    /// client: the host obtains access tokens from --token-url and injects those; the
    /// value is read as JSON {"client_id":…,"client_secret":…,"refresh_token":…} from
    /// stdin, or prompted for field by field on a terminal).
    #[arg(long, default_value = "static", value_name = "KIND")]
    pub kind: String,
    #[command(flatten)]
    pub signer: SignerArgs,
    #[command(flatten)]
    pub oauth: OAuthArgs,
    #[command(flatten)]
    pub quota: QuotaArgs,
    /// With --server: send the value as it is instead of sealed to the server's key (the
    /// server is https, or plain http on this machine: --server allows nothing else).
    #[arg(long)]
    pub no_seal: bool,
}

/// What an `aws-sigv4` or `jwt-*` credential signs for or asserts (part of its binding).
#[derive(Args, Debug)]
pub struct SignerArgs {
    /// `aws-sigv4`: the region requests are signed for (e.g. us-east-1).
    #[arg(long, value_name = "REGION", requires = "aws_service")]
    pub aws_region: Option<String>,
    /// `aws-sigv4`: the service requests are signed for (e.g. s3, sqs, execute-api).
    #[arg(long, value_name = "SERVICE", requires = "aws_region")]
    pub aws_service: Option<String>,
    /// `jwt-*`: the `iss` claim (e.g. a GitHub App id).
    #[arg(long, value_name = "ISS", conflicts_with = "aws_region")]
    pub jwt_issuer: Option<String>,
    /// `jwt-*`: the `sub` claim.
    #[arg(long, value_name = "SUB", requires = "jwt_issuer")]
    pub jwt_subject: Option<String>,
    /// `jwt-*`: the `aud` claim.
    #[arg(long, value_name = "AUD", requires = "jwt_issuer")]
    pub jwt_audience: Option<String>,
    /// `jwt-*`: the `scope` claim.
    #[arg(long, value_name = "SCOPE", requires = "jwt_issuer")]
    pub jwt_scope: Option<String>,
    /// `jwt-*`: lifetime of each minted token in seconds (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value_t = latchkey_host::DEFAULT_JWT_TTL_SECS)]
    pub jwt_ttl: u32,
    /// `jwt-*`: the `kid` header.
    #[arg(long, value_name = "KID", requires = "jwt_issuer")]
    pub jwt_key_id: Option<String>,
}

impl SignerArgs {
    fn params(&self) -> Option<latchkey_host::SignerParams> {
        use latchkey_host::{AwsSigner, JwtClaims, SignerParams};
        if let (Some(region), Some(service)) = (&self.aws_region, &self.aws_service) {
            return Some(SignerParams::Aws(AwsSigner {
                region: region.clone(),
                service: service.clone(),
            }));
        }
        self.jwt_issuer.as_ref().map(|issuer| {
            SignerParams::Jwt(JwtClaims {
                issuer: issuer.clone(),
                subject: self.jwt_subject.clone(),
                audience: self.jwt_audience.clone(),
                scope: self.jwt_scope.clone(),
                ttl_secs: self.jwt_ttl,
                key_id: self.jwt_key_id.clone(),
            })
        })
    }
}

#[derive(Args, Debug)]
pub struct OAuthArgs {
    /// For --kind oauth2: the token endpoint the host asks for access tokens (https; plain
    /// http only to a loopback address). The client authenticates with HTTP Basic.
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// For --kind oauth2: the `scope` sent to the token endpoint (space-separated).
    /// (`--scope` is where the secret is stored.)
    #[arg(long, value_name = "SCOPES")]
    pub oauth_scope: Option<String>,
    /// For --kind oauth2: `refresh-token` (the value holds a refresh token; a rotated one is
    /// stored by the host) or `client-credentials` (no refresh token).
    #[arg(long, default_value = "refresh-token", value_name = "GRANT")]
    pub grant: String,
}

impl OAuthArgs {
    /// The token endpoint for `kind`, or an error naming the flag that does not fit.
    fn endpoint(&self, kind: CredentialKind) -> Result<Option<TokenEndpoint>> {
        let grant = Grant::parse(&self.grant).with_context(|| {
            format!(
                "--grant {:?}: use refresh-token or client-credentials",
                self.grant
            )
        })?;
        match (kind, &self.token_url) {
            (CredentialKind::OAuth2, Some(url)) => Ok(Some(
                TokenEndpoint::new(url, self.oauth_scope.clone(), grant)
                    .context("--token-url/--oauth-scope")?,
            )),
            (CredentialKind::OAuth2, None) => bail!("--kind oauth2 needs --token-url"),
            (_, Some(_)) => bail!("--token-url is only for --kind oauth2"),
            (_, None) if self.oauth_scope.is_some() => {
                bail!("--oauth-scope is only for --kind oauth2")
            }
            (_, None) => Ok(None),
        }
    }
}

#[derive(Args, Debug)]
pub struct QuotaArgs {
    /// At most N requests per minute (the current UTC minute) may carry the value; more
    /// are refused with `limit-exceeded` before anything is sent. Default: no limit.
    #[arg(long, value_name = "N")]
    pub quota_per_minute: Option<u32>,
    /// At most N requests per day (since midnight UTC) may carry the value. Counted in the
    /// store, so a restart does not reset it. Default: no limit.
    #[arg(long, value_name = "N")]
    pub quota_per_day: Option<u32>,
}

impl QuotaArgs {
    fn quota(&self) -> Result<Quota> {
        Quota::new(self.quota_per_minute, self.quota_per_day)
            .context("--quota-per-minute/--quota-per-day")
    }

    fn given(&self) -> bool {
        self.quota_per_minute.is_some() || self.quota_per_day.is_some()
    }
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Store the new value even if it looks easy to guess. Replaces the override recorded
    /// for the previous value.
    #[arg(long)]
    pub allow_weak_value: bool,
    /// Replace the quota with these limits (both windows: a window not given has no
    /// limit). Without either flag the quota is kept.
    #[command(flatten)]
    pub quota: QuotaArgs,
    /// Remove the quota.
    #[arg(long, conflicts_with_all = ["quota_per_minute", "quota_per_day"])]
    pub no_quota: bool,
}

impl RotateArgs {
    /// The quota to store: `None` keeps the current one.
    fn new_quota(&self) -> Result<Option<Quota>> {
        if self.no_quota {
            return Ok(Some(Quota::default()));
        }
        if self.quota.given() {
            return Ok(Some(self.quota.quota()?));
        }
        Ok(None)
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this scope (same forms as `secret set --scope`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
}

impl SecretCommand {
    pub fn execute(self, store: &StoreArgs, remote: Option<&Remote>) -> Result<()> {
        if let Some(r) = remote {
            return self.execute_remote(r);
        }
        match self {
            SecretCommand::Set(args) => set(store, *args),
            SecretCommand::Rotate(args) => rotate(store, args),
            SecretCommand::Rm(args) => rm(store, args),
            SecretCommand::List(args) => list(store, args),
        }
    }
}

/// Parses `--scope`; `workspace` alone is `workspace:default`.
fn parse_scope(s: &str) -> Result<Scope> {
    let text = if s == "workspace" {
        "workspace:default"
    } else {
        s
    };
    Ok(Scope::parse(text)?)
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

fn parse_kind(s: &str) -> Result<CredentialKind> {
    CredentialKind::parse(s).with_context(|| {
        format!(
            "--kind {s:?}: use one of {}",
            CredentialKind::NAMES.join(", ")
        )
    })
}

/// The value of a credential of `kind`: for `oauth2` on a terminal, each field prompted
/// for (secrets hidden) and joined into the JSON the store expects; otherwise
/// [`read_value`] (for `oauth2`, that JSON from stdin).
fn read_value_of(key: &CredentialKey, kind: CredentialKind, grant: Grant) -> Result<SecretValue> {
    if kind != CredentialKind::OAuth2 || !std::io::stdin().is_terminal() {
        return read_value(key);
    }
    let mut client_id = Zeroizing::new(String::new());
    eprint!("client_id for {key}: ");
    std::io::stdin()
        .read_line(&mut client_id)
        .context("reading the client id")?;
    let hidden = |field: &str| -> Result<Zeroizing<String>> {
        Ok(Zeroizing::new(
            rpassword::prompt_password(format!("{field} for {key} (input hidden): "))
                .with_context(|| format!("reading the {field}"))?,
        ))
    };
    let secret = hidden("client_secret")?;
    let mut fields = serde_json::Map::new();
    fields.insert("client_id".into(), client_id.trim().into());
    fields.insert("client_secret".into(), secret.as_str().into());
    if grant == Grant::RefreshToken {
        let refresh = hidden("refresh_token")?;
        fields.insert("refresh_token".into(), refresh.as_str().into());
    }
    let json = Zeroizing::new(serde_json::to_vec(&fields)?);
    // The map's strings are plain `String`s: clear them before they are dropped.
    for v in fields.values_mut() {
        if let serde_json::Value::String(s) = v {
            zeroize::Zeroize::zeroize(s);
        }
    }
    SecretValue::new(json.to_vec()).with_context(|| format!("refusing the value for {key}"))
}

fn binding(args: &SetArgs) -> Result<latchkey_host::Binding> {
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
    Ok(BindingSpec {
        hosts,
        locations,
        allow_http: args.allow_http,
        methods: args.methods.clone(),
        path_prefixes: args.path_prefixes.clone(),
        allow_internal: args.allow_internal,
        signer: args.signer.params(),
    }
    .build()?)
}

fn set(store: &StoreArgs, args: SetArgs) -> Result<()> {
    // Validate everything before reading the value or touching the store.
    let key = CredentialKey::new(&args.key.key)?;
    let scope = parse_scope(&args.key.scope.scope)?;
    let binding = binding(&args)?;
    let quota = args.quota.quota()?;
    let kind = parse_kind(&args.kind)?;
    let oauth = args.oauth.endpoint(kind)?;
    let by = args.key.actor.principal()?;
    let latchkey = store.open(Options::default())?;
    let grant = oauth.as_ref().map(|e| e.grant).unwrap_or_default();
    let value = read_value_of(&key, kind, grant)?;
    let spec = SecretSpec {
        integration: args.integration,
        binding,
        allow_weak_value: args.allow_weak_value,
        quota,
        kind,
        oauth,
    };
    let meta = latchkey
        .set_secret(&by, &scope, &key, value, spec)
        .with_context(|| format!("storing {key} in {scope}"))?;
    println!(
        "stored {} in {} (version {})",
        meta.key, meta.scope, meta.version
    );
    Ok(())
}

fn rotate(store: &StoreArgs, rotate: RotateArgs) -> Result<()> {
    let quota = rotate.new_quota()?;
    let args = rotate.key;
    let key = CredentialKey::new(&args.key)?;
    let scope = parse_scope(&args.scope.scope)?;
    let by = args.actor.principal()?;
    let latchkey = store.open(Options::default())?;
    let Some(current) = latchkey.describe_secret(&by, &scope, &key)? else {
        bail!("no secret {key} in scope {scope}; create it with `latchkey secret set`");
    };
    let grant = current.oauth.as_ref().map(|e| e.grant).unwrap_or_default();
    let value = read_value_of(&key, current.kind, grant)?;
    let meta = latchkey
        .rotate_secret_with_quota(&by, &scope, &key, value, rotate.allow_weak_value, quota)
        .with_context(|| format!("rotating {key} in {scope}"))?;
    println!(
        "rotated {} in {} (now version {})",
        meta.key, meta.scope, meta.version
    );
    Ok(())
}

fn rm(store: &StoreArgs, args: KeyArgs) -> Result<()> {
    let key = CredentialKey::new(&args.key)?;
    let scope = parse_scope(&args.scope.scope)?;
    let by = args.actor.principal()?;
    let latchkey = store.open(Options::default())?;
    let meta = latchkey.delete_secret(&by, &scope, &key)?;
    println!("deleted {} from {}", meta.key, meta.scope);
    Ok(())
}

fn list(store: &StoreArgs, args: ListArgs) -> Result<()> {
    let scope = args.scope.as_deref().map(parse_scope).transpose()?;
    let by = args.actor.principal()?;
    let latchkey = store.open(Options::default())?;
    let entries = latchkey
        .list_secrets(&by, scope.as_ref())?
        .into_iter()
        .map(|e| e.map_err(|err| err.to_string()))
        .collect();
    print_list(entries, scope.as_ref(), args.json)
}

/// Prints `secret list`: JSON lines, or a table; a damaged record is reported in place.
fn print_list(
    entries: Vec<Result<SecretMeta, String>>,
    scope: Option<&Scope>,
    json: bool,
) -> Result<()> {
    if json {
        for e in &entries {
            match e {
                Ok(m) => println!("{}", serde_json::to_string(m)?),
                Err(err) => println!("{}", serde_json::json!({ "error": err })),
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
    if !m.kind.is_sent() {
        hosts.push(format!("(signing key: {})", m.kind));
    }
    if let Some(s) = &m.binding.signer {
        hosts.push(format!("({s})"));
    }
    if let Some(e) = &m.oauth {
        hosts.push(format!("(oauth2 {} via {})", e.grant, e.as_str()));
        if let Some(s) = &e.scope {
            hosts.push(format!("oauth scope {s}"));
        }
    }
    if !m.quota.is_unlimited() {
        hosts.push(format!("quota {}", m.quota));
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

impl SecretCommand {
    /// The same commands against a server: the principal is the token's.
    fn execute_remote(self, r: &Remote) -> Result<()> {
        match self {
            SecretCommand::Set(args) => {
                let args = *args;
                let (key, scope) = remote_target(&args.key)?;
                let kind = parse_kind(&args.kind)?;
                let oauth = args.oauth.endpoint(kind)?;
                let grant = oauth.as_ref().map(|e| e.grant).unwrap_or_default();
                let body = api::PutSecret {
                    value: remote_value(r, &key, args.no_seal, kind, grant)?,
                    binding: api::BindingBody {
                        hosts: args.allow_host,
                        locations: args.inject,
                        allow_http: args.allow_http,
                        methods: args.methods,
                        path_prefixes: args.path_prefixes,
                        allow_internal: args.allow_internal,
                        signer: args.signer.params(),
                    },
                    integration: args.integration,
                    allow_weak_value: args.allow_weak_value,
                    quota: args.quota.given().then(|| args.quota.quota()).transpose()?,
                    kind: (args.kind != "static").then(|| args.kind.clone()),
                    oauth: oauth.map(|e| api::OAuthBody {
                        url: e.as_str().to_owned(),
                        grant: Some(e.grant.to_string()),
                        scope: e.scope.clone(),
                    }),
                };
                let v: api::SecretView = r.call(
                    &format!("storing {key} in {scope}"),
                    reqwest::Method::PUT,
                    &format!("/v1/secrets/{key}?scope={}", encode(&scope.to_string())),
                    Some(&body),
                )?;
                println!(
                    "stored {} in {} (version {})",
                    v.meta.key, v.meta.scope, v.meta.version
                );
            }
            SecretCommand::Rotate(args) => {
                let (key, scope) = remote_target(&args.key)?;
                let quota = args.new_quota()?;
                // The kind decides how the value is asked for on a terminal.
                let current: api::SecretView = r.get(
                    &format!("reading {key} in {scope}"),
                    &format!("/v1/secrets/{key}?scope={}", encode(&scope.to_string())),
                )?;
                let grant = current
                    .meta
                    .oauth
                    .as_ref()
                    .map(|e| e.grant)
                    .unwrap_or_default();
                let body = api::RotateSecret {
                    value: remote_value(r, &key, false, current.meta.kind, grant)?,
                    allow_weak_value: args.allow_weak_value,
                    quota,
                };
                let v: api::SecretView = r.call(
                    &format!("rotating {key} in {scope}"),
                    reqwest::Method::POST,
                    &format!(
                        "/v1/secrets/{key}/rotate?scope={}",
                        encode(&scope.to_string())
                    ),
                    Some(&body),
                )?;
                println!(
                    "rotated {} in {} (now version {})",
                    v.meta.key, v.meta.scope, v.meta.version
                );
            }
            SecretCommand::Rm(args) => {
                let (key, scope) = remote_target(&args)?;
                let v: api::SecretView = r.call(
                    &format!("deleting {key} from {scope}"),
                    reqwest::Method::DELETE,
                    &format!("/v1/secrets/{key}?scope={}", encode(&scope.to_string())),
                    None::<&()>,
                )?;
                println!("deleted {} from {}", v.meta.key, v.meta.scope);
            }
            SecretCommand::List(args) => {
                refuse_actor(&args.actor)?;
                let scope = args.scope.as_deref().map(parse_scope).transpose()?;
                let path = match &scope {
                    Some(s) => format!("/v1/secrets?scope={}", encode(&s.to_string())),
                    None => "/v1/secrets".to_owned(),
                };
                let entries: Vec<api::ListedSecret> = r.get("listing secrets", &path)?;
                let entries = entries
                    .into_iter()
                    .map(|e| match e {
                        api::ListedSecret::Ok(v) => Ok(v.meta),
                        api::ListedSecret::Damaged(d) => Err(d.error),
                    })
                    .collect();
                print_list(entries, scope.as_ref(), args.json)?;
            }
        }
        Ok(())
    }
}

/// `--as` names the actor locally; against a server the token does.
fn refuse_actor(actor: &ActorArgs) -> Result<()> {
    if actor.actor.is_some() && std::env::var_os("LATCHKEY_ACTOR").is_none() {
        bail!("--as does not apply with --server: the acting principal is the token's");
    }
    Ok(())
}

fn remote_target(args: &KeyArgs) -> Result<(CredentialKey, Scope)> {
    refuse_actor(&args.actor)?;
    Ok((
        CredentialKey::new(&args.key)?,
        parse_scope(&args.scope.scope)?,
    ))
}

/// The value read as locally, sealed to the server's key unless `--no-seal`. A [`Remote`]
/// is only ever https or on this machine (`remote::server_url`), so an unsealed value
/// crosses no network in clear.
fn remote_value(
    r: &Remote,
    key: &CredentialKey,
    no_seal: bool,
    kind: CredentialKind,
    grant: Grant,
) -> Result<api::ValueBody> {
    let value = read_value_of(key, kind, grant)?;
    if no_seal {
        let text = std::str::from_utf8(value.expose()).context(
            "--no-seal sends the value as JSON text, which must be UTF-8; leave the value sealed",
        )?;
        return Ok(api::ValueBody {
            value: Some(text.to_owned()),
            sealed_value: None,
        });
    }
    Ok(api::ValueBody {
        value: None,
        sealed_value: Some(r.seal(&value)?),
    })
}
