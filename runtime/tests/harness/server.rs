//! A real `latchkey serve` on 127.0.0.1 port 0 for tests, and HTTP requests to it.

use super::Cli;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server, its address, and everything it printed.
pub struct Server {
    pub child: Child,
    pub url: String,
    printed: Arc<Mutex<String>>,
    http: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capture(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        into.lock().unwrap().push_str(&s);
    });
}

impl Server {
    /// `latchkey serve` on the store of `cli`, with `extra` flags; debug logging on so that
    /// the no-value checks see everything the server could log.
    pub fn start(cli: &Cli, extra: &[&str]) -> Server {
        Self::start_with_env(cli, extra, &[])
    }

    /// [`Server::start`] with `env` set for the server process.
    pub fn start_with_env(cli: &Cli, extra: &[&str], env: &[(&str, &Path)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-private-network",
        ];
        args.extend_from_slice(extra);
        let mut cmd = cli.command(&args);
        cmd.envs(env.iter().copied())
            .env("LATCHKEY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let url = first
            .trim()
            .strip_prefix("latchkey serving on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_owned();
        let printed = Arc::new(Mutex::new(first));
        capture(out, printed.clone());
        capture(child.stderr.take().unwrap(), printed.clone());
        let mut server = Server {
            child,
            url,
            printed,
            http: Client::new(),
        };
        server.wait_until_ready();
        server
    }

    /// Waits until `GET /readyz` answers 200: the address line says the socket is bound, this
    /// says requests are being served. A browser visiting the page any earlier can get a
    /// refused connection on a loaded machine (issue 22); a server that exits instead fails
    /// here with what it printed.
    fn wait_until_ready(&mut self) {
        // A server with a test certificate is ready as well: this probe does not check it
        // (the tests that use TLS check it themselves).
        let probe = Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "latchkey serve exited ({status}) before it was ready:\n{}",
                    self.printed()
                );
            }
            let ready = probe
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "latchkey serve at {} was not ready after 60 s:\n{}",
                self.url,
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn req(&self, method: &str, path: &str, token: Option<&str>) -> RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self.http.request(m, format!("{}{path}", self.url));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn json(&self, method: &str, path: &str, token: &str, body: Value) -> Response {
        self.req(method, path, Some(token))
            .json(&body)
            .send()
            .unwrap()
    }

    pub fn get(&self, path: &str, token: &str) -> Response {
        self.req("GET", path, Some(token)).send().unwrap()
    }

    /// Everything the server printed so far.
    pub fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }
}

/// A store with an admin token (created before the server starts, as an operator would).
pub fn store_with_admin() -> (Cli, String) {
    let cli = Cli::new();
    let token = cli.admin_token();
    (cli, token)
}
