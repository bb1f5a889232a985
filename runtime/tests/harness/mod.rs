//! One way to drive the `latchkey` binary in tests: a temporary directory, a child
//! environment with every `LATCHKEY_*` variable of the developer's shell removed, and
//! output captured as text. Every test file of this crate uses it (`mod harness;`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod openbao;
pub mod postgres;
pub mod server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where the store and the master key are.
enum Layout {
    /// `--store DIR/store --master-key-file DIR/master.key` through the environment.
    Explicit,
    /// The working directory is DIR and the defaults apply (`.latchkey/store`, …).
    Project,
    /// `--store URL` (a shared database) and `--master-key-file DIR/master.key`, run in DIR.
    Shared(String),
}

/// A temporary directory the binary runs against.
pub struct Cli {
    pub dir: tempfile::TempDir,
    layout: Layout,
    /// Values no command may ever print.
    secrets: std::cell::RefCell<Vec<String>>,
}

impl Cli {
    /// A directory with an initialised store (`DIR/store`, `DIR/master.key`).
    pub fn new() -> Cli {
        let cli = Cli::uninitialised();
        cli.ok(&["init"], None);
        cli
    }

    /// A directory with nothing in it yet; store and key at `DIR/store`, `DIR/master.key`.
    pub fn uninitialised() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            layout: Layout::Explicit,
            secrets: Default::default(),
        }
    }

    /// A project directory run with the default layout (`.latchkey/…` under it).
    pub fn project() -> Cli {
        Cli {
            layout: Layout::Project,
            ..Cli::uninitialised()
        }
    }

    /// A directory whose store is the database at `url` (not initialised yet).
    pub fn shared(url: &str) -> Cli {
        Cli {
            layout: Layout::Shared(url.to_owned()),
            ..Cli::uninitialised()
        }
    }

    /// A new admin token `root` for the store (`token create`), as printed.
    #[allow(dead_code)]
    pub fn admin_token(&self) -> String {
        let out = self.ok(
            &["token", "create", "--name", "root", "--role", "admin"],
            None,
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(token.starts_with("lk_"), "{token}");
        token
    }

    /// Another host of the same shared store: its own directory, with a copy of this
    /// one's master key file.
    pub fn another_host(&self) -> Cli {
        let other = Cli {
            layout: match &self.layout {
                Layout::Shared(url) => Layout::Shared(url.clone()),
                _ => panic!("another_host needs a shared store"),
            },
            ..Cli::uninitialised()
        };
        let key = std::fs::read(self.path("master.key")).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(other.path("master.key"))
            .unwrap();
        f.write_all(&key).unwrap();
        *other.secrets.borrow_mut() = self.secrets.borrow().clone();
        other
    }

    /// A path inside the directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `value` must never appear in anything a command prints.
    pub fn never_prints(&self, value: &str) {
        self.secrets.borrow_mut().push(value.to_owned());
    }

    /// The binary with `args`, a clean environment (`USER=ops`) and the store's location.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.args(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LATCHKEY_") {
                c.env_remove(name);
            }
        }
        c.env("USER", "ops");
        match &self.layout {
            Layout::Explicit => {
                c.env("LATCHKEY_STORE", self.path("store"))
                    .env("LATCHKEY_MASTER_KEY_FILE", self.path("master.key"));
            }
            Layout::Project => {
                c.current_dir(self.dir.path());
            }
            Layout::Shared(url) => {
                c.env("LATCHKEY_STORE", url)
                    .env("LATCHKEY_MASTER_KEY_FILE", self.path("master.key"))
                    .current_dir(self.dir.path());
            }
        }
        c
    }

    /// Runs `c` with `stdin` piped in (or closed at once), checking that no registered
    /// value was printed.
    pub fn output(&self, mut c: Command, stdin: Option<&[u8]>) -> Output {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // A command may exit before reading its input (a refused flag): not an error.
            let _ = pipe.write_all(bytes);
        }
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        let shown = text(&out);
        for v in self.secrets.borrow().iter() {
            assert!(
                !shown.contains(v.as_str()),
                "a command printed a value:\n{shown}"
            );
        }
        out
    }

    /// Runs `latchkey ARGS`.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.output(self.command(args), stdin)
    }

    /// Runs `latchkey ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "latchkey {args:?} failed:\n{}",
            text(&out)
        );
        out
    }

    /// `printf '%s\n' VALUE | latchkey secret set KEY --allow-host HOST --inject AT
    /// --allow-http EXTRA...`; the value is registered as never printed.
    pub fn secret_set(
        &self,
        key: &str,
        value: &str,
        host: &str,
        inject: &str,
        extra: &[&str],
    ) -> Output {
        self.never_prints(value);
        let mut args = secret_set_args(key, host, inject);
        args.push("--allow-http");
        args.extend_from_slice(extra);
        self.run(&args, Some(format!("{value}\n").as_bytes()))
    }
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The path of a built test guest, as text for an argument.
pub fn guest(name: &str) -> String {
    latchkey_tests::guest(name).display().to_string()
}

/// Whether `p` exists (for readable assertions).
pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// `secret set KEY --allow-host HOST --inject AT`.
pub fn secret_set_args<'a>(key: &'a str, host: &'a str, inject: &'a str) -> Vec<&'a str> {
    vec![
        "secret",
        "set",
        key,
        "--allow-host",
        host,
        "--inject",
        inject,
    ]
}
