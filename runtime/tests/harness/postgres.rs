//! A real PostgreSQL 15 cluster for tests: `initdb` and `pg_ctl` from
//! `/usr/lib/postgresql/15/bin` in a temporary directory, listening on 127.0.0.1 on a free
//! port (and a socket in that directory only). initdb refuses to run as root, so as root the
//! cluster belongs to `nobody`. The cluster is stopped when the guard is dropped, also when
//! a test panics.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's postgresql-15 puts its programs (`tests/setup/10-postgres.sh` installs it).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster; stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Whether the programs run as `nobody` (this process is root).
    as_nobody: bool,
}

fn bin(name: &str) -> PathBuf {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash tests/setup/10-postgres.sh` (installs postgresql-15)",
        path.display()
    );
    path
}

/// The uid and gid of `nobody`, from /etc/passwd.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("no user nobody to run PostgreSQL as");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// initdb + start; waits until the server accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("latchkey-pg")
            .tempdir()
            .unwrap();
        let as_nobody = is_root();
        if as_nobody {
            let (uid, gid) = nobody();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pg = Postgres {
            dir,
            port: free_port(),
            as_nobody,
        };
        let data = pg.data();
        pg.ok(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "latchkey",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A program of the cluster, run as its owner.
    fn program(&self, name: &str, args: &[&str]) -> Command {
        let mut c = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(bin(name));
            c
        } else {
            Command::new(bin(name))
        };
        c.args(args).current_dir(self.dir.path());
        c
    }

    fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.program(name, args).output().unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the (stopped) cluster again on the same port.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("log");
        self.ok(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the cluster (fast shutdown: sessions are ended, nothing committed is lost).
    pub fn stop(&self) {
        self.stop_as("fast");
    }

    fn stop_as(&self, mode: &str) {
        let data = self.data();
        self.ok(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", mode, "-w", "stop"],
        );
    }

    /// Crashes the cluster (immediate shutdown: no checkpoint, and WAL not yet flushed is
    /// lost, as in a crash of the server or its machine); `start_again` recovers it.
    #[allow(dead_code)]
    pub fn crash(&self) {
        self.stop_as("immediate");
    }

    /// A migrated, initialised store on a new database `db`, and an admin token for it.
    #[allow(dead_code)]
    pub fn store_with_admin(&self, db: &str) -> (super::Cli, String) {
        let url = self.create_db(db);
        let cli = super::Cli::shared(&url);
        cli.ok(&["store", "migrate"], None);
        cli.ok(&["init"], None);
        let token = cli.admin_token();
        (cli, token)
    }

    /// A new database; its URL.
    pub fn create_db(&self, name: &str) -> String {
        let port = self.port.to_string();
        self.ok(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "latchkey", name],
        );
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://latchkey@127.0.0.1:{}/{name}", self.port)
    }

    /// `pg_dump` of database `name`, as text.
    pub fn dump(&self, name: &str) -> String {
        let port = self.port.to_string();
        self.ok(
            "pg_dump",
            &["-h", "127.0.0.1", "-p", &port, "-U", "latchkey", name],
        )
    }

    /// One SQL statement through psql; its unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        self.ok(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "latchkey",
                "-d",
                db,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .program(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            )
            .output();
    }
}
