//! The engine is the platform: registrations and runs live in the store, so `latchkey
//! serve` processes sharing one PostgreSQL store are one platform. Register on A, run on
//! B, read the run and its audit on A; a restart loses nothing; a runner sees only their
//! own runs whichever host they ask; a host killed during a run leaves the run marked
//! lost by another once its lease expires. And no step can stall a host: `/healthz`
//! answers while every run slot spins, and memory stays bounded under a flood of large
//! outputs.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::postgres::Postgres;
use harness::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn token(s: &Server, admin: &str, name: &str, role: &str) -> String {
    let r = s.json(
        "POST",
        "/v1/tokens",
        admin,
        json!({"name": name, "role": role}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn register(s: &Server, admin: &str, name: &str, guest: &str) {
    let wasm = std::fs::read(latchkey_tests::guest(guest)).unwrap();
    let r = s
        .req("POST", &format!("/v1/components?name={name}"), Some(admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

fn run(s: &Server, token: &str, body: Value) -> Value {
    let r = s.json("POST", "/v1/runs", token, body);
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// `GET path` until `done` holds, for at most `bound`.
fn poll(
    s: &Server,
    path: &str,
    token: &str,
    bound: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + bound;
    loop {
        let v: Value = s.get(path, token).json().unwrap();
        if done(&v) || Instant::now() > until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hosts_sharing_a_store_are_one_platform() {
    let pg = Postgres::start();
    let (cli, admin) = pg.store_with_admin("platform");
    let other = cli.another_host();
    let a = Server::start(&cli, &[]);
    let b = Server::start(&other, &[]);

    // Registered on A, known on B: the component and a workflow over it.
    register(&a, &admin, "probe", "probe");
    let listed: Value = b.get("/v1/components", &admin).json().unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "probe"),
        "{listed}"
    );
    let manifest = "name = \"echo-flow\"\n\n[[step]]\nname = \"echo\"\ncomponent = \"probe\"\n";
    let r = a
        .req("PUT", "/v1/workflows/echo-flow", Some(&admin))
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let flows: Value = b.get("/v1/workflows", &admin).json().unwrap();
    assert_eq!(flows[0]["name"], "echo-flow", "{flows}");

    // Run on B, read the run and its audit on A.
    let alice = token(&a, &admin, "alice", "runner");
    let bob = token(&b, &admin, "bob", "runner");
    let done = run(
        &b,
        &alice,
        json!({"component": "probe", "input": {"action": "echo", "n": 1}, "wait": true}),
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let seen: Value = a.get(&format!("/v1/runs/{id}"), &alice).json().unwrap();
    assert_eq!(seen["status"], "succeeded", "{seen}");
    assert_eq!(seen["output"]["n"], 1, "{seen}");
    let flow = run(
        &a,
        &bob,
        json!({"workflow": "echo-flow", "input": {"action": "echo", "w": 2}, "wait": true}),
    );
    assert_eq!(flow["status"], "succeeded", "{flow}");
    assert_eq!(flow["output"]["w"], 2, "{flow}");
    let audit = a.get(&format!("/v1/runs/{id}/audit"), &admin);
    assert_eq!(audit.status(), StatusCode::OK);

    // A runner sees only their own runs, on either host.
    for s in [&a, &b] {
        assert_eq!(
            s.get(&format!("/v1/runs/{id}"), &bob).status(),
            StatusCode::NOT_FOUND
        );
        let mine: Value = s.get("/v1/runs", &bob).json().unwrap();
        assert!(
            mine.as_array().unwrap().iter().all(|r| r["user"] == "bob"),
            "{mine}"
        );
        let all: Value = s.get("/v1/runs", &admin).json().unwrap();
        assert!(all.as_array().unwrap().len() >= 2, "{all}");
    }

    // A restart of A loses nothing acknowledged.
    drop(a);
    let a = Server::start(&cli, &[]);
    let seen: Value = a.get(&format!("/v1/runs/{id}"), &alice).json().unwrap();
    assert_eq!(seen["status"], "succeeded", "{seen}");
    let again = run(
        &a,
        &alice,
        json!({"component": "probe", "input": {"action": "echo"}, "wait": true}),
    );
    assert_eq!(again["status"], "succeeded", "{again}");
}

#[test]
fn a_run_whose_host_is_killed_is_marked_lost_by_another_after_its_lease() {
    let pg = Postgres::start();
    let (cli, admin) = pg.store_with_admin("lost");
    let other = cli.another_host();
    let lease = ["--run-lease-secs", "1", "--deadline", "60"];
    let a = Server::start(&cli, &lease);
    let mut b = Server::start(&other, &lease);
    register(&a, &admin, "spin", "spin");
    let started = run(&b, &admin, json!({"component": "spin", "input": {}}));
    let id = started["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/runs/{id}");
    let running = poll(&a, &path, &admin, Duration::from_secs(10), |v| {
        v["status"] == "running"
    });
    assert_eq!(running["status"], "running", "{running}");
    // Renewed while B lives: still running well past one lease.
    std::thread::sleep(Duration::from_secs(3));
    let v: Value = a.get(&path, &admin).json().unwrap();
    assert_eq!(v["status"], "running", "{v}");

    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let lost = poll(&a, &path, &admin, Duration::from_secs(20), |v| {
        v["status"] == "lost"
    });
    assert_eq!(lost["status"], "lost", "{lost}");
    assert!(lost["error"].as_str().unwrap().contains("lease"), "{lost}");
    let audit: Value = a
        .get(&format!("/v1/runs/{id}/audit"), &admin)
        .json()
        .unwrap();
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "run-lost"),
        "{audit}"
    );
}

/// With twice as many spinning runs as cores holding every run slot, the host still
/// answers at once: guests yield to the scheduler at every epoch tick and run on threads
/// of their own, never on the request workers.
#[test]
fn spinning_steps_do_not_stall_the_server() {
    let (cli, admin) = harness::server::store_with_admin();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let slots = (cores * 2).to_string();
    let s = Server::start(&cli, &["--max-concurrent-runs", &slots, "--deadline", "30"]);
    register(&s, &admin, "spin", "spin");
    for _ in 0..cores * 2 {
        run(&s, &admin, json!({"component": "spin", "input": {}}));
    }
    // Every slot is spinning.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let runs: Value = s.get("/v1/runs", &admin).json().unwrap();
        let running = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "running")
            .count();
        if running == cores * 2 || Instant::now() > until {
            assert_eq!(running, cores * 2, "{runs}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let r = s.req("GET", "/healthz", None).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let who = s.get("/v1/whoami", &admin);
        assert_eq!(who.status(), StatusCode::OK);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Far from both what it takes (milliseconds) and what it took before (the deadline).
    assert!(worst < Duration::from_secs(2), "slowest answer {worst:?}");
    eprintln!(
        "slowest /healthz + /v1/whoami with {} spinning runs: {worst:?}",
        cores * 2
    );
}

/// The RSS of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A thousand runs that each return 1 MiB keep the server's memory bounded: the records
/// keep 64 KiB of output each, and sled's cache is bounded (README: under 512 MiB).
#[test]
fn a_flood_of_large_outputs_keeps_memory_bounded() {
    let (cli, admin) = harness::server::store_with_admin();
    let s = Server::start(&cli, &["--requests-per-second", "100000"]);
    register(&s, &admin, "probe", "probe");
    let before = rss_kib(s.child.id());
    let body = json!({"component": "probe", "input": {"action": "fill", "bytes": (1 << 20) - 64}, "wait": true});
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, admin, body) = (s.url.clone(), admin.clone(), body.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                for _ in 0..250 {
                    let r = http
                        .post(format!("{url}/v1/runs"))
                        .bearer_auth(&admin)
                        .json(&body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    let v: Value = r.json().unwrap();
                    assert_eq!(v["status"], "succeeded", "{}", v["error"]);
                    assert_eq!(v["output"]["fill"].as_str().unwrap().len(), (1 << 20) - 64);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = rss_kib(s.child.id());
    eprintln!("server RSS before {before} KiB, after 1,000 runs of 1 MiB outputs {after} KiB");
    let page: Value = s.get("/v1/runs?limit=1", &admin).json().unwrap();
    assert_eq!(page[0]["output_truncated"], true, "{}", text_of(&page));
    assert_eq!(page[0]["output"].as_str().unwrap().len(), 64 << 10);
    assert!(after < 512 << 10, "RSS {after} KiB after the flood");
}

fn text_of(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(300).collect()
}

/// A run's caller learns of a refusal what the step was told, not what the binding allows:
/// the operator's wording (allowed methods, hosts, paths) stays in the audit trail, which a
/// runner may not read (and `GET /v1/secrets/KEY` is 403 to them).
#[test]
fn a_runner_reads_a_refusal_in_the_steps_words_not_the_bindings() {
    let (cli, admin) = harness::server::store_with_admin();
    let s = Server::start(&cli, &[]);
    register(&s, &admin, "probe", "probe");
    let up = latchkey_tests::upstream::Upstream::start_blocking().unwrap();
    let r = s.json(
        "PUT",
        "/v1/secrets/HOOK_KEY?scope=workspace:default",
        &admin,
        json!({"value": "tok-hook-key-5c1e9a7d3b", "binding": {
            "hosts": [format!("127.0.0.1:{}", up.port())],
            "inject": ["header:authorization"], "allow_http": true,
            "methods": ["POST"], "path_prefixes": ["/hooks/"]}}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let runner = token(&s, &admin, "ci", "runner");
    let done = run(
        &s,
        &runner,
        json!({"component": "probe", "wait": true, "input": {"action": "fetch", "key": "HOOK_KEY",
            "method": "GET", "url": format!("http://127.0.0.1:{}/hooks/x", up.port())}}),
    );
    assert_eq!(done["status"], "failed", "{done}");
    let shown = done.to_string();
    let refusal = &done["steps"][0]["refusals"][0];
    assert_eq!(refusal["key"], "HOOK_KEY", "{done}");
    assert!(
        !shown.contains("POST"),
        "the allowed method leaked: {shown}"
    );
    let audit: Value = s
        .get(
            &format!("/v1/runs/{}/audit", done["id"].as_str().unwrap()),
            &admin,
        )
        .json()
        .unwrap();
    assert!(audit.to_string().contains("POST"), "{audit}");
}
