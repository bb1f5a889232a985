//! Figure 9 (`shared`): resolve + decrypt on a PostgreSQL store against the sled store
//! holding the same records, in the same run. Each sled store is filled, copied as stored
//! into a fresh database of a PostgreSQL 15 cluster this figure starts (initdb + pg_ctl
//! from /usr/lib/postgresql/15/bin, as `nobody` when run as root, on 127.0.0.1) and both
//! are measured with the same keys. Every PostgreSQL resolution reads the records over the
//! connection (one round trip for every tier; no cache: a rotation on any host is seen by
//! the next call).
//!
//! Figure `shared-fetch`: the one-injected-fetch step of figure 2 (probe guest, a bearer to
//! loopback) on a PostgreSQL store against the same step on a sled store, one host, the
//! database on loopback, sampled in alternating blocks.

use super::{CMD, POOL, TOKEN, fetch_input, ns_to_us, print, read_guest, runtime};
use anyhow::{Context, Result, bail};
use latchkey_bench::{Figure, Samples};
use latchkey_host::resolve::{RunContext, resolve_and_decrypt_for_bench};
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{Backend, Location, MasterKey, PostgresBackend, SecretStore};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::{TestStore, workspace};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throw-away cluster; stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_nobody: bool,
}

impl Cluster {
    fn program(&self, name: &str, args: &[&str]) -> Command {
        let path = Path::new(BIN).join(name);
        let mut c = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.args(args).current_dir(self.dir.path());
        c
    }

    fn ok(&self, name: &str, args: &[&str]) -> Result<()> {
        let out = self.program(name, args).output()?;
        if !out.status.success() {
            bail!("{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn start() -> Result<Cluster> {
        if !Path::new(BIN).join("initdb").exists() {
            bail!("{BIN}/initdb is missing: run `bash tests/setup/10-postgres.sh`");
        }
        let dir = tempfile::tempdir()?;
        let as_nobody = latchkey_host::store::effective_uid() == Some(0);
        if as_nobody {
            let passwd = std::fs::read_to_string("/etc/passwd")?;
            let f: Vec<&str> = passwd
                .lines()
                .find(|l| l.starts_with("nobody:"))
                .context("no user nobody")?
                .split(':')
                .collect();
            std::os::unix::fs::chown(dir.path(), Some(f[2].parse()?), Some(f[3].parse()?))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let c = Cluster {
            dir,
            port,
            as_nobody,
        };
        let data: PathBuf = c.dir.path().join("data");
        let data = data.to_str().context("path")?.to_owned();
        c.ok(
            "initdb",
            &["-D", &data, "-U", "latchkey", "--auth=trust", "--no-sync"],
        )?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            c.dir.path().display()
        );
        let log = c.dir.path().join("log");
        c.ok(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &options,
                "-l",
                log.to_str().context("path")?,
                "-w",
                "start",
            ],
        )?;
        Ok(c)
    }

    fn database(&self, name: &str) -> Result<String> {
        let port = self.port.to_string();
        self.ok(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "latchkey", name],
        )?;
        Ok(format!(
            "postgres://latchkey@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .program(
                "pg_ctl",
                &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"],
            )
            .output();
    }
}

fn measure(store: &SecretStore, key: &CredentialKey, iters: usize) -> Result<Samples> {
    let ctx = RunContext::single_step("default", "wf", "alice");
    for _ in 0..200 {
        resolve_and_decrypt_for_bench(store, &ctx, key)?;
    }
    let mut s = Samples::default();
    for _ in 0..iters {
        let t = Instant::now();
        std::hint::black_box(resolve_and_decrypt_for_bench(store, &ctx, key)?);
        s.push(t.elapsed());
    }
    Ok(s)
}

/// For each size: the sled store from [`super::filled_sled`], copied into PostgreSQL.
pub(crate) fn figures(iters: usize, quick: bool) -> Result<Vec<Figure>> {
    let cluster = Cluster::start()?;
    let sizes: &[usize] = if quick {
        &[10, 1_000]
    } else {
        &[10, 10_000, 100_000]
    };
    let mut out = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store");
        let master = MasterKey::generate()?;
        super::filled_sled(&path, &master, n)?;
        let sled = SecretStore::open(&path, &master)?;
        let url = cluster.database(&format!("bench{n}"))?;
        PostgresBackend::migrate(&url)?;
        let t = Instant::now();
        let target = PostgresBackend::open(&url)?;
        sled.copy_into(&target as &dyn Backend, &url)?;
        let copied = t.elapsed();
        let pg = SecretStore::open_with(Box::new(target), &url, &master)?;
        for k in ["TARGET_KEY", "USER_KEY"] {
            let key = CredentialKey::new(k)?;
            let mut base = measure(&sled, &key, iters)?;
            let mut s = measure(&pg, &key, iters)?;
            let tier = if k == "TARGET_KEY" {
                "workspace_tier_4"
            } else {
                "user_workflow_tier_1"
            };
            let f = Figure {
                name: format!("resolve_decrypt_postgres_{tier}_{n}_secrets"),
                median: ns_to_us(s.median()),
                p99: ns_to_us(s.p99()),
                unit: "us".into(),
                baseline_median: Some(ns_to_us(base.median())),
                ratio: Some(s.median() / base.median()),
                target: "none set: the cost of reading every call from a shared database (baseline: the same records in sled, same run)".into(),
                met: None,
                command: format!("{CMD} shared"),
                notes: format!(
                    "PostgreSQL 15 on 127.0.0.1, one connection; sled p99 {:.2} us; {} samples each; records copied in {:.1} s",
                    ns_to_us(base.p99()),
                    s.len(),
                    copied.as_secs_f64()
                ),
            };
            print(&f);
            out.push(f);
        }
    }
    Ok(out)
}

/// Figure `shared-fetch`: whole runs of the one-injected-fetch step on a PostgreSQL store
/// ÷ the same on a sled store, in the same process, alternating blocks of each.
pub(crate) async fn fetch_figures(iters: usize) -> Result<Vec<Figure>> {
    let cluster = Cluster::start()?;
    let url = cluster.database("fetch")?;
    PostgresBackend::migrate(&url)?;
    let master = MasterKey::generate()?;
    let pg = TestStore {
        dir: tempfile::tempdir()?,
        store: Arc::new(SecretStore::init_at(&Location::Postgres(url), &master)?),
    };
    let sled = TestStore::new();
    for ts in [&pg, &sled] {
        ts.put(
            &workspace(),
            "BENCH_TOKEN",
            TOKEN,
            &["127.0.0.1:*"],
            &["header:authorization"],
        );
    }
    let up = Upstream::start().await?;
    let input = fetch_input(&up);
    let ctx = RunContext::single_step("default", "fetch", "alice");
    let on_pg = runtime(&pg, POOL)?;
    let on_sled = runtime(&sled, POOL)?;
    let guest = read_guest("probe")?;
    let (pg_step, sled_step) = (on_pg.load(&guest)?, on_sled.load(&guest)?);
    for (rt, step) in [(&on_pg, &pg_step), (&on_sled, &sled_step)] {
        let out = rt
            .run(step, &ctx, &input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !out.output.contains("\"status\":200") {
            bail!("the fetch step did not get a 200: {}", out.output);
        }
    }
    let mut samples = [Samples::default(), Samples::default()];
    for round in 0..25 {
        up.clear();
        for (v, (rt, step)) in [(&on_pg, &pg_step), (&on_sled, &sled_step)]
            .into_iter()
            .enumerate()
        {
            for _ in 0..(iters / 20).max(10) {
                let t = Instant::now();
                let out = rt
                    .run(step, &ctx, &input)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                std::hint::black_box(out);
                // The first 5 rounds warm pools, connections and the allocator.
                if round >= 5 {
                    samples[v].push(t.elapsed());
                }
            }
        }
    }
    let [p, s] = &mut samples;
    let ratio = p.median() / s.median();
    let f = Figure {
        name: "injected_fetch_step_postgres_vs_sled".into(),
        median: ns_to_us(p.median()),
        p99: ns_to_us(p.p99()),
        unit: "us".into(),
        baseline_median: Some(ns_to_us(s.median())),
        ratio: Some(ratio),
        target: "ratio <= 1.5 (baseline: the same step on a sled store, same run)".into(),
        met: Some(ratio <= 1.5),
        command: format!("{CMD} shared-fetch"),
        notes: format!(
            "probe guest, one GET to loopback /status/200 with an injected bearer, whole runs; PostgreSQL 15 on 127.0.0.1 (one connection), sled p99 {:.1} us; {} samples each, alternating blocks",
            ns_to_us(s.p99()),
            p.len()
        ),
    };
    print(&f);
    up.shutdown().await;
    Ok(vec![f])
}
