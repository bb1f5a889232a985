//! The shared backend: PostgreSQL, so that several hosts use one store.
//!
//! The database holds what sled holds and nothing more: sealed secret records (metadata in
//! clear, the value AES-256-GCM-sealed under the data key), the data key wrapped by the
//! master key, token records (HMACs, never tokens), the chained audit trail, static values
//! rotated away (kept sealed for a grace period as scrub patterns), and the platform's
//! registrations and run records. One table per namespace (`latchkey_secrets`,
//! `latchkey_meta`, `latchkey_tokens`, `latchkey_audit`, `latchkey_quota`, `latchkey_oauth`,
//! `latchkey_retired`, `latchkey_components`, `latchkey_registry`, `latchkey_runs`); the
//! schema is versioned in `latchkey_schema` and created by
//! [`PostgresBackend::migrate`] (`latchkey store migrate`).
//!
//! # One thread for the connection
//!
//! [`Backend`] is synchronous, and it is called from inside tokio runtimes (a server's
//! handlers, a run's `http.fetch`), where blocking on a runtime's handle panics. The client
//! (tokio-postgres) therefore lives on a thread of its own, with a current-thread runtime:
//! a call sends a job over a channel and blocks its own thread on a std channel for the
//! answer, as a sled call blocks on its disk. Jobs run concurrently on that runtime,
//! pipelined on one connection, so a slow query does not queue the others behind it.
//!
//! # Failures
//!
//! A call that cannot reach the database, or gets no answer within [`CALL_TIMEOUT`], fails
//! with [`BackendError::Unavailable`] naming the database (never its password). The
//! connection is re-opened by the next call once the old one is closed, and a read that
//! failed on a connection found closed is retried once on a new one (reads are
//! idempotent; writes are not retried, their outcome is reported unknown).
//!
//! # Concurrency
//!
//! Secret writes are compare-and-set on the `version` column ([`Backend::compare_and_put`]);
//! audit appends insert at `last id + 1` and retry if another host took that id
//! ([`Backend::append_chained`]), so the chain stays one chain across hosts.
//!
//! # Durability of appends
//!
//! Every statement is committed when it returns, so what it wrote survives this process
//! being killed and is seen by every host at once. Audit appends, the one write on a
//! fetch's path, commit without waiting for the database's WAL flush (the statement sets
//! `synchronous_commit` off for its own transaction), as the embedded log appends with one
//! `write(2)` and no sync: waiting cost about 1.2 ms a fetch (issue 24's profile). Against
//! a crash of the database server or its machine they are made durable as the embedded
//! log's are: by [`Backend::flush`] (a statement that waits for the flush of everything
//! committed before it: `--strict-durability`, and every durable change's record), and
//! otherwise within [`SYNC_WINDOW`] by a sync this backend schedules after an append.

use super::backend::{AppendBuilder, Backend, BackendError, Expected, Record, Records};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Statement};

/// How long a call waits for the database (connecting included) before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Appends retried when other hosts keep taking the next id.
const APPEND_ATTEMPTS: usize = 1000;
/// Appends committed asynchronously are synced within this window (the embedded log's).
const SYNC_WINDOW: Duration = super::log::SYNC_WINDOW;
/// A write whose commit waits for the WAL flush, and so for every asynchronous commit
/// before it. (A transaction that writes no WAL, such as `SELECT txid_current()`, does
/// not wait.) The row is the schema's newest, which every opened store has, in a table
/// the store's role owns: no privilege beyond the store's own is needed.
const SYNC_SQL: &str = "UPDATE latchkey_schema SET applied_at = applied_at \
     WHERE version = (SELECT max(version) FROM latchkey_schema)";

/// The schema, one migration per version; `latchkey_schema` records the versions applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS latchkey_meta (
         id bytea PRIMARY KEY,
         value bytea NOT NULL);
     CREATE TABLE IF NOT EXISTS latchkey_secrets (
         id bytea PRIMARY KEY,
         scope text NOT NULL,
         key text NOT NULL,
         version bigint NOT NULL,
         record bytea NOT NULL);
     CREATE TABLE IF NOT EXISTS latchkey_tokens (
         id bytea PRIMARY KEY,
         record bytea NOT NULL);
     CREATE TABLE IF NOT EXISTS latchkey_audit (
         id bigint PRIMARY KEY,
         record bytea NOT NULL);",
    ),
    (
        // Request counters of credentials with a quota, and what the host keeps for OAuth2
        // credentials (the sealed access token, and who is refreshing it): both written by
        // compare-and-put, so that hosts sharing the store count and refresh once.
        2,
        "CREATE TABLE IF NOT EXISTS latchkey_quota (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS latchkey_oauth (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);",
    ),
    (
        // Static values rotated away, kept sealed for a grace period as scrub patterns;
        // and the platform's own state, so that hosts sharing the store are one platform:
        // registered components (content-addressed wasm), names and workflows, and run
        // records (ids grow with time: pages are read newest first by the primary key).
        3,
        "CREATE TABLE IF NOT EXISTS latchkey_retired (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS latchkey_components (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS latchkey_registry (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS latchkey_runs (
             id bytea PRIMARY KEY,
             value bytea NOT NULL);",
    ),
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 3;

/// Where one namespace lives: its table, and whether ids are audit sequence numbers.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    value: &'static str,
    numeric_ids: bool,
}

fn table(namespace: &str) -> Result<Table, BackendError> {
    use super::namespaces as ns;
    let t = |name, value, numeric_ids| Table {
        name,
        value,
        numeric_ids,
    };
    match namespace {
        ns::SECRETS => Ok(t("latchkey_secrets", "record", false)),
        ns::META => Ok(t("latchkey_meta", "value", false)),
        ns::TOKENS => Ok(t("latchkey_tokens", "record", false)),
        ns::AUDIT => Ok(t("latchkey_audit", "record", true)),
        ns::QUOTA => Ok(t("latchkey_quota", "value", false)),
        ns::OAUTH => Ok(t("latchkey_oauth", "value", false)),
        ns::COMPONENTS => Ok(t("latchkey_components", "value", false)),
        ns::REGISTRY => Ok(t("latchkey_registry", "value", false)),
        ns::RUNS => Ok(t("latchkey_runs", "value", false)),
        ns::RETIRED => Ok(t("latchkey_retired", "value", false)),
        other => Err(BackendError::UnknownNamespace(other.to_owned())),
    }
}

/// An audit id as the 8 big-endian bytes the other backends use.
fn audit_id(id: &[u8]) -> Result<i64, BackendError> {
    <[u8; 8]>::try_from(id)
        .ok()
        .map(i64::from_be_bytes)
        .filter(|i| *i >= 0)
        .ok_or_else(|| BackendError::UnknownNamespace("audit (id is not a sequence number)".into()))
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    /// The database as shown in errors.
    store: String,
    statements: std::sync::Mutex<std::collections::HashMap<String, Statement>>,
}

impl Conn {
    /// The statement for `sql`, prepared once per connection.
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.lock().get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.lock().insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Maps a client error during `what` to a backend error naming the database.
    fn fail(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> BackendError + '_ {
        move |e| failed(&self.store, what, e)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Job = Box<
    dyn FnOnce(Result<Arc<Conn>, BackendError>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send,
>;

/// A PostgreSQL database as a [`Backend`].
pub struct PostgresBackend {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    shown: String,
    /// The newest record this host appended, by table: what its next append builds on
    /// first (see [`Backend::append_chained_all`]).
    appended: Arc<std::sync::Mutex<Appended>>,
    /// Appends committed without waiting for the WAL flush, and what is synced of them.
    unsynced: Arc<Unsynced>,
}

/// Counts of asynchronous commits: made, and known to be flushed; and whether a sync is
/// scheduled on the connection thread.
#[derive(Default)]
struct Unsynced {
    committed: std::sync::atomic::AtomicU64,
    synced: std::sync::atomic::AtomicU64,
    scheduled: std::sync::atomic::AtomicBool,
}

impl Unsynced {
    /// Whether every asynchronous commit made so far is known to be flushed.
    fn all_synced(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.synced.load(SeqCst) >= self.committed.load(SeqCst)
    }

    /// Makes every asynchronous commit made before it durable.
    async fn sync(&self, c: &Conn) -> Result<(), BackendError> {
        use std::sync::atomic::Ordering::SeqCst;
        let target = self.committed.load(SeqCst);
        if self.synced.load(SeqCst) >= target {
            return Ok(());
        }
        let s = c.statement(SYNC_SQL).await.map_err(c.fail("a sync"))?;
        c.client.execute(&s, &[]).await.map_err(c.fail("a sync"))?;
        self.synced.fetch_max(target, SeqCst);
        Ok(())
    }

    /// Notes an asynchronous commit and, unless one is on its way, schedules a sync within
    /// [`SYNC_WINDOW`] on the connection thread (where this runs).
    fn committed(self: &Arc<Self>, c: &Arc<Conn>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.committed.fetch_add(1, SeqCst);
        if self.scheduled.swap(true, SeqCst) {
            return;
        }
        let (this, c) = (self.clone(), c.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SYNC_WINDOW).await;
                if let Err(e) = this.sync(&c).await {
                    // PostgreSQL's own WAL writer still flushes it (within three
                    // `wal_writer_delay`s); the next append schedules another try.
                    tracing::warn!(error = %e, "syncing the audit trail's appends failed");
                }
                this.scheduled.store(false, SeqCst);
                // An append that found a sync scheduled while this one ran needs another.
                if this.all_synced() || this.scheduled.swap(true, SeqCst)
                {
                    return;
                }
            }
        });
    }
}

/// Table → (id, bytes) of the newest record appended through this backend.
type Appended = std::collections::HashMap<&'static str, (i64, Vec<u8>)>;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A remembered record is only a first guess, checked by the insert: a poisoned map
    // is as good as a clean one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A database location as it may be shown: `postgres://user@host:port/db`, never the
/// password.
fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

/// Whether `url` names a PostgreSQL database (rather than a sled directory).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The password-free form of a database URL, for messages; `url` itself if it does not parse.
pub fn shown_url(url: &str) -> String {
    url.parse::<tokio_postgres::Config>()
        .map(|c| shown(&c))
        .unwrap_or_else(|_| "(a database URL that does not parse)".into())
}

fn unavailable(
    store: &str,
    reason: impl Into<String>,
    e: Option<tokio_postgres::Error>,
) -> BackendError {
    BackendError::Unavailable {
        store: store.to_owned(),
        reason: reason.into(),
        source: e.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    }
}

/// A client error as a backend error: connection trouble is [`BackendError::Unavailable`],
/// anything the server refused is [`BackendError::Database`] with its message.
fn failed(store: &str, what: &'static str, e: tokio_postgres::Error) -> BackendError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Class 57 (operator intervention: shutdown, restart) and 08 (connection).
        if code.starts_with("57") || code.starts_with("08") {
            let reason = format!("{} ({code})", db.message());
            return unavailable(store, reason, Some(e));
        }
        if code == "42P01" {
            return BackendError::Schema {
                store: store.to_owned(),
                problem: format!(
                    "has no Latchkey tables ({}): run `latchkey store migrate` first",
                    db.message()
                ),
            };
        }
        return BackendError::Database {
            store: store.to_owned(),
            what,
            reason: format!("{} ({code})", db.message()),
            source: Box::new(e),
        };
    }
    let reason = if e.is_closed() {
        "the connection was closed".to_owned()
    } else {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        text
    };
    unavailable(store, reason, Some(e))
}

async fn connect(config: &tokio_postgres::Config, store: &str) -> Result<Arc<Conn>, BackendError> {
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await;
    let (client, connection) = match attempt {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(failed(store, "the connection", e)),
        Err(_) => {
            return Err(unavailable(
                store,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                None,
            ));
        }
    };
    let store = store.to_owned();
    let logged = store.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(store = %logged, error = %e, "the database connection ended");
        }
    });
    Ok(Arc::new(Conn {
        client,
        store: store.clone(),
        statements: Default::default(),
    }))
}

/// The connection thread: connects when there is no open connection, then runs each job
/// as a task of its own.
async fn serve(
    config: tokio_postgres::Config,
    store: String,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    let mut conn: Option<Arc<Conn>> = None;
    while let Some(job) = jobs.recv().await {
        let open = match &conn {
            Some(c) if !c.client.is_closed() => Ok(c.clone()),
            _ => {
                conn = None;
                let c = connect(&config, &store).await;
                if let Ok(c) = &c {
                    conn = Some(c.clone());
                }
                c
            }
        };
        tokio::spawn(job(open));
    }
}

impl PostgresBackend {
    /// The records of the appended table `t` with an id over `after`, in id order.
    fn appended_after(&self, t: Table, after: i64) -> Result<Records, BackendError> {
        let sql = format!(
            "SELECT id, {} FROM {} WHERE id > $1 ORDER BY id",
            t.value, t.name
        );
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a scan"))?;
            let rows = c
                .client
                .query(&s, &[&after])
                .await
                .map_err(c.fail("a scan"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    (id.to_be_bytes().to_vec(), r.get::<_, Vec<u8>>(1))
                })
                .collect())
        })
    }

    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and
    /// checks that its schema is the one this build knows.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        let backend = Self::connect(url)?;
        match backend.schema_version()? {
            Some(SCHEMA_VERSION) => Ok(backend),
            None => Err(BackendError::Schema {
                store: backend.shown.clone(),
                problem: "has no Latchkey schema: run `latchkey store migrate` first".into(),
            }),
            Some(v) if v < SCHEMA_VERSION => Err(BackendError::Schema {
                store: backend.shown.clone(),
                problem: format!(
                    "has schema version {v}, older than this build's {SCHEMA_VERSION}: run `latchkey store migrate`"
                ),
            }),
            Some(v) => Err(BackendError::Schema {
                store: backend.shown.clone(),
                problem: format!(
                    "has schema version {v}, newer than this build's {SCHEMA_VERSION}: use a newer latchkey"
                ),
            }),
        }
    }

    /// Starts the connection thread for `url` without checking the schema.
    fn connect(url: &str) -> Result<Self, BackendError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| BackendError::Schema {
            store: "(the --store URL)".into(),
            problem: format!("is not a valid PostgreSQL URL: {e}"),
        })?;
        let mut config = config;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("latchkey");
        }
        let store = shown(&config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BackendError::Io)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("latchkey-postgres".into())
            .spawn(move || runtime.block_on(serve(config, thread_store, rx)))
            .map_err(BackendError::Io)?;
        Ok(PostgresBackend {
            jobs: tx,
            shown: store,
            appended: Default::default(),
            unsynced: Default::default(),
        })
    }

    /// The database, as it may be shown (no password).
    #[cfg(any(test, feature = "testing"))]
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Brings the schema up to [`SCHEMA_VERSION`]; returns the versions before and after.
    /// Each migration runs in one transaction under an advisory lock, so hosts migrating
    /// at once apply it once.
    pub fn migrate(url: &str) -> Result<(i32, i32), BackendError> {
        let backend = Self::connect(url)?;
        let before = backend.schema_version()?.unwrap_or(0);
        if before > SCHEMA_VERSION {
            return Err(BackendError::Schema {
                store: backend.shown.clone(),
                problem: format!(
                    "has schema version {before}, newer than this build's {SCHEMA_VERSION}: use a newer latchkey"
                ),
            });
        }
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > before) {
            let batch = format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(7431001);
                 CREATE TABLE IF NOT EXISTS latchkey_schema (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now());
                 {sql}
                 INSERT INTO latchkey_schema (version) VALUES ({version}) ON CONFLICT DO NOTHING;
                 COMMIT;"
            );
            backend.call(false, move |c| async move {
                c.client
                    .batch_execute(&batch)
                    .await
                    .map_err(c.fail("migrating"))
            })?;
        }
        Ok((before, SCHEMA_VERSION))
    }

    /// The newest schema version applied, `None` if the database has no Latchkey schema.
    pub fn schema_version(&self) -> Result<Option<i32>, BackendError> {
        self.call(true, |c| async move {
            let exists = c
                .client
                .query_one("SELECT to_regclass('latchkey_schema') IS NOT NULL", &[])
                .await
                .map_err(c.fail("reading the schema version"))?;
            if !exists.get::<_, bool>(0) {
                return Ok(None);
            }
            let row = c
                .client
                .query_one("SELECT max(version) FROM latchkey_schema", &[])
                .await
                .map_err(c.fail("reading the schema version"))?;
            Ok(row.get::<_, Option<i32>>(0))
        })
    }

    /// Runs `f` on the connection thread and waits for its answer. A read (`retry`) that
    /// fails because the connection was found closed is tried once more, on a new one.
    fn call<T, F, Fut>(&self, retry: bool, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let first = self.call_once(f.clone());
        match first {
            Err(BackendError::Unavailable { .. }) if retry => self.call_once(f),
            other => other,
        }
    }

    fn call_once<T, F, Fut>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let store = self.shown.clone();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = match conn {
                    Err(e) => Err(e),
                    Ok(c) => match tokio::time::timeout(CALL_TIMEOUT, f(c)).await {
                        Ok(r) => r,
                        Err(_) => Err(unavailable(
                            &store,
                            format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                            None,
                        )),
                    },
                };
                let _ = tx.send(result);
            })
        });
        let gone = || unavailable(&self.shown, "the connection thread stopped", None);
        self.jobs.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// One query's parameters, owned so that a job can be retried.
type Bytes = Vec<u8>;

/// The (scope, key) columns of a secret's storage id (`scope \0 key`).
fn scope_and_key(id: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(id);
    let (scope, key) = text.split_once('\u{0}').unwrap_or((&text, ""));
    (scope.to_owned(), key.to_owned())
}

impl Backend for PostgresBackend {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let t = table(ns)?;
        let sql = format!("SELECT {} FROM {} WHERE id = $1", t.value, t.name);
        let id: Bytes = id.to_vec();
        if t.numeric_ids {
            let n = audit_id(&id)?;
            return self.call(true, move |c| async move {
                let s = c.statement(&sql).await.map_err(c.fail("a read"))?;
                let row = c
                    .client
                    .query_opt(&s, &[&n])
                    .await
                    .map_err(c.fail("a read"))?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            });
        }
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a read"))?;
            let row = c
                .client
                .query_opt(&s, &[&id])
                .await
                .map_err(c.fail("a read"))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    /// One statement for every id (`id = ANY($1)`): the tiers a resolution may look in
    /// cost one round trip, not one each.
    fn get_many(&self, ns: &str, ids: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let t = table(ns)?;
        if t.numeric_ids {
            return ids.iter().map(|id| self.get(ns, id)).collect();
        }
        let sql = format!(
            "SELECT id, {} FROM {} WHERE id = ANY($1)",
            t.value, t.name
        );
        let wanted: Vec<Bytes> = ids.to_vec();
        let rows = self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a read"))?;
            let rows = c
                .client
                .query(&s, &[&wanted])
                .await
                .map_err(c.fail("a read"))?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect::<Records>())
        })?;
        let mut out: Vec<Option<Vec<u8>>> = vec![None; ids.len()];
        for (id, value) in rows {
            for (slot, wanted) in out.iter_mut().zip(ids) {
                if *wanted == id {
                    *slot = Some(value.clone());
                }
            }
        }
        Ok(out)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let t = table(ns)?;
        let (id, value): (Bytes, Bytes) = (id.to_vec(), value.to_vec());
        if t.numeric_ids {
            let n = audit_id(&id)?;
            let sql = format!(
                "INSERT INTO {0} (id, {1}) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET {1} = EXCLUDED.{1}",
                t.name, t.value
            );
            return self.call(false, move |c| async move {
                let s = c.statement(&sql).await.map_err(c.fail("a write"))?;
                c.client
                    .execute(&s, &[&n, &value])
                    .await
                    .map_err(c.fail("a write"))?;
                Ok(())
            });
        }
        if ns == "secrets" {
            // Version 0: written outside compare-and-set (tests that edit a record).
            let (scope, key) = scope_and_key(&id);
            let sql = "INSERT INTO latchkey_secrets (id, scope, key, version, record) VALUES ($1, $2, $3, 0, $4)
                       ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, version = 0";
            return self.call(false, move |c| async move {
                let s = c.statement(sql).await.map_err(c.fail("a write"))?;
                c.client
                    .execute(&s, &[&id, &scope, &key, &value])
                    .await
                    .map_err(c.fail("a write"))?;
                Ok(())
            });
        }
        let sql = format!(
            "INSERT INTO {0} (id, {1}) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET {1} = EXCLUDED.{1}",
            t.name, t.value
        );
        self.call(false, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a write"))?;
            c.client
                .execute(&s, &[&id, &value])
                .await
                .map_err(c.fail("a write"))?;
            Ok(())
        })
    }

    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        let t = table(ns)?;
        let sql = format!("DELETE FROM {} WHERE id = $1", t.name);
        let id: Bytes = id.to_vec();
        if t.numeric_ids {
            let n = audit_id(&id)?;
            return self.call(false, move |c| async move {
                let s = c.statement(&sql).await.map_err(c.fail("a delete"))?;
                Ok(c.client
                    .execute(&s, &[&n])
                    .await
                    .map_err(c.fail("a delete"))?
                    > 0)
            });
        }
        self.call(false, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a delete"))?;
            Ok(c.client
                .execute(&s, &[&id])
                .await
                .map_err(c.fail("a delete"))?
                > 0)
        })
    }

    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        let t = table(ns)?;
        if t.numeric_ids {
            if !prefix.is_empty() {
                return Err(BackendError::UnknownNamespace(
                    "audit (scanned by a prefix)".into(),
                ));
            }
            return self.appended_after(t, -1);
        }
        // bytea compares bytewise, as sled orders its keys.
        let sql = format!(
            "SELECT id, {} FROM {} WHERE substring(id FROM 1 FOR $2) = $1 ORDER BY id",
            t.value, t.name
        );
        let prefix: Bytes = prefix.to_vec();
        let len = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a scan"))?;
            let rows = c
                .client
                .query(&s, &[&prefix, &len])
                .await
                .map_err(c.fail("a scan"))?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    fn scan_newest(
        &self,
        ns: &str,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let t = table(ns)?;
        if t.numeric_ids {
            return Err(BackendError::UnknownNamespace(format!(
                "{ns} (scanned newest first)"
            )));
        }
        // A range on the primary key, read backwards: only the page is read.
        let end = super::backend::page_end(prefix, before);
        let sql = format!(
            "SELECT id, {} FROM {} WHERE id >= $1 AND ($2::bytea IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            t.value, t.name
        );
        let from: Bytes = prefix.to_vec();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a scan"))?;
            let rows = c
                .client
                .query(&s, &[&from, &end, &limit])
                .await
                .map_err(c.fail("a scan"))?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    fn scan_appended_newest(
        &self,
        ns: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let t = table(ns)?;
        if !t.numeric_ids {
            return Err(BackendError::UnknownNamespace(format!(
                "{ns} (scanned as appended)"
            )));
        }
        let before: Option<i64> = before.map(audit_id).transpose()?;
        let sql = format!(
            "SELECT id, {} FROM {} WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            t.value, t.name
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a scan"))?;
            let rows = c
                .client
                .query(&s, &[&before, &limit])
                .await
                .map_err(c.fail("a scan"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    (id.to_be_bytes().to_vec(), r.get::<_, Vec<u8>>(1))
                })
                .collect())
        })
    }

    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        let value = value.to_vec();
        self.append_chained(ns, Box::new(move |_| value.clone()))
    }

    /// The cursor is the last id read. Ids are consecutive and each append inserts the
    /// id after the newest committed one, so what a reader sees past its cursor is never
    /// followed by an earlier id committing later.
    fn scan_appended_since(
        &self,
        ns: &str,
        cursor: &[u8],
    ) -> Result<(Records, Vec<u8>), BackendError> {
        let t = table(ns)?;
        if !t.numeric_ids {
            return Err(BackendError::UnknownNamespace(format!(
                "{ns} (scanned as appended)"
            )));
        }
        let after: i64 = <[u8; 8]>::try_from(cursor).map_or(-1, i64::from_be_bytes);
        let records = self.appended_after(t, after)?;
        let next = records
            .last()
            .map_or(after.to_be_bytes().to_vec(), |(id, _)| id.clone());
        Ok((records, next))
    }

    fn append_chained(&self, ns: &str, build: AppendBuilder) -> Result<u64, BackendError> {
        self.append_chained_all(ns, vec![build])
    }

    /// All the records in one statement: at the ids after the newest committed one, each
    /// built from the one before. The newest record this host appended is remembered, and
    /// the first attempt builds on it without reading the table: one round trip while no
    /// other host appended since. An insert whose guess is not the newest record (another
    /// host appended first, or the database lost a tail it had not flushed) or that finds
    /// an id taken inserts nothing, and is built again on the newest record read back. The
    /// statement commits asynchronously (see the module's "Durability of appends").
    fn append_chained_all(
        &self,
        ns: &str,
        builds: Vec<AppendBuilder>,
    ) -> Result<u64, BackendError> {
        let t = table(ns)?;
        if !t.numeric_ids {
            return Err(BackendError::UnknownNamespace(format!(
                "{ns} (appended to)"
            )));
        }
        if builds.is_empty() {
            return Ok(0);
        }
        let last_sql = format!(
            "SELECT id, {} FROM {} ORDER BY id DESC LIMIT 1",
            t.value, t.name
        );
        // `set_config(…, true)` lasts to the end of the statement's own transaction, whose
        // commit reads it; the guard inserts only on top of the record the chain was built on.
        let insert_sql = format!(
            "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) \
             INSERT INTO {t} (id, {v}) SELECT u.id, u.v \
             FROM unnest($1::bigint[], $2::bytea[]) AS u(id, v), async \
             WHERE (SELECT coalesce(max(id), -1) FROM {t}) = $3",
            t = t.name,
            v = t.value
        );
        let builds = Arc::new(builds);
        let appended = self.appended.clone();
        let unsynced = self.unsynced.clone();
        let name = t.name;
        self.call(false, move |c| async move {
            let remembered = lock(&appended).get(name).cloned();
            let mut last: Option<(i64, Vec<u8>)> = remembered;
            let mut read = last.is_none();
            for _ in 0..APPEND_ATTEMPTS {
                if read {
                    let s = c.statement(&last_sql).await.map_err(c.fail("an append"))?;
                    let row = c
                        .client
                        .query_opt(&s, &[])
                        .await
                        .map_err(c.fail("an append"))?;
                    last = row.map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)));
                }
                read = true;
                let on: i64 = last.as_ref().map_or(-1, |(id, _)| *id);
                let mut next = on + 1;
                let mut previous = last.as_ref().map(|(_, v)| v.clone());
                let (mut ids, mut values) = (Vec::new(), Vec::new());
                for build in builds.iter() {
                    let value = build(previous.as_deref());
                    ids.push(next);
                    next += 1;
                    values.push(value.clone());
                    previous = Some(value);
                }
                let insert = c
                    .statement(&insert_sql)
                    .await
                    .map_err(c.fail("an append"))?;
                match c.client.execute(&insert, &[&ids, &values, &on]).await {
                    // The newest record was not the one built on.
                    Ok(0) => {}
                    Ok(_) => {
                        unsynced.committed(&c);
                        let id = next - 1;
                        if let Some(v) = previous {
                            lock(&appended).insert(name, (id, v));
                        }
                        return Ok(id as u64);
                    }
                    // Another host took one of the ids first; the statement inserted none.
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    }
                    Err(e) => return Err(c.fail("an append")(e)),
                }
            }
            // Practically unreachable: a thousand other appends won each race.
            Err(unavailable(
                &c.store,
                "other hosts kept appending to the audit trail first",
                None,
            ))
        })
    }

    fn flush(&self) -> Result<(), BackendError> {
        // Every other statement waited for its commit's flush (PostgreSQL's default
        // synchronous_commit); the appends did not.
        if self.unsynced.all_synced() {
            return Ok(());
        }
        let unsynced = self.unsynced.clone();
        self.call(false, move |c| async move { unsynced.sync(&c).await })
    }

    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        let t = table(ns)?;
        if !t.numeric_ids {
            return Ok(self.scan(ns, b"")?.pop());
        }
        let sql = format!(
            "SELECT id, {} FROM {} ORDER BY id DESC LIMIT 1",
            t.value, t.name
        );
        self.call(true, move |c| async move {
            let s = c.statement(&sql).await.map_err(c.fail("a read"))?;
            let row = c
                .client
                .query_opt(&s, &[])
                .await
                .map_err(c.fail("a read"))?;
            Ok(row.map(|r| {
                let id: i64 = r.get(0);
                (id.to_be_bytes().to_vec(), r.get::<_, Vec<u8>>(1))
            }))
        })
    }

    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        version: u64,
    ) -> Result<bool, BackendError> {
        let t = table(ns)?;
        if t.numeric_ids {
            return Err(BackendError::UnknownNamespace(
                "audit (compare-and-put)".into(),
            ));
        }
        let (id, value): (Bytes, Bytes) = (id.to_vec(), value.to_vec());
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        if ns == "secrets" {
            let (scope, key) = scope_and_key(&id);
            return match expected {
                None => self.call(false, move |c| async move {
                    let sql = "INSERT INTO latchkey_secrets (id, scope, key, version, record)
                               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";
                    let s = c.statement(sql).await.map_err(c.fail("a write"))?;
                    let n = c
                        .client
                        .execute(&s, &[&id, &scope, &key, &version, &value])
                        .await
                        .map_err(c.fail("a write"))?;
                    Ok(n == 1)
                }),
                Some(e) => {
                    let read = i64::try_from(e.version).unwrap_or(i64::MAX);
                    self.call(false, move |c| async move {
                        let sql = "UPDATE latchkey_secrets SET record = $3, version = $4
                                   WHERE id = $1 AND version = $2";
                        let s = c.statement(sql).await.map_err(c.fail("a write"))?;
                        let n = c
                            .client
                            .execute(&s, &[&id, &read, &value, &version])
                            .await
                            .map_err(c.fail("a write"))?;
                        Ok(n == 1)
                    })
                }
            };
        }
        match expected {
            None => {
                let sql = format!(
                    "INSERT INTO {} (id, {}) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                    t.name, t.value
                );
                self.call(false, move |c| async move {
                    let s = c.statement(&sql).await.map_err(c.fail("a write"))?;
                    let n = c
                        .client
                        .execute(&s, &[&id, &value])
                        .await
                        .map_err(c.fail("a write"))?;
                    Ok(n == 1)
                })
            }
            Some(e) => {
                let read: Bytes = e.bytes.to_vec();
                let sql = format!(
                    "UPDATE {0} SET {1} = $3 WHERE id = $1 AND {1} = $2",
                    t.name, t.value
                );
                self.call(false, move |c| async move {
                    let s = c.statement(&sql).await.map_err(c.fail("a write"))?;
                    let n = c
                        .client
                        .execute(&s, &[&id, &read, &value])
                        .await
                        .map_err(c.fail("a write"))?;
                    Ok(n == 1)
                })
            }
        }
    }
}
