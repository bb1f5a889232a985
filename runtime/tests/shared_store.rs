//! Several hosts, one store: `latchkey serve` processes sharing a real PostgreSQL 15 cluster
//! (started by the test in a temporary directory, on 127.0.0.1). A secret set on one host runs
//! on another, a rotation is seen by the next call on every host, a member removed on one
//! host is gone on the others, a token revoked on one host is refused by the others at their
//! next request, two admins rotating at once get one win and one conflict,
//! kill -9 loses nothing acknowledged, a restarted database gives a clear error and then
//! works again, and the database never holds a value in clear.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::postgres::Postgres;
use harness::server::Server;
use harness::{Cli, text};
use latchkey_tests::upstream::Upstream;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};

const VALUE: &str = "tok-shared-6b1f9d3e7a2c5084";
const ROTATED: &str = "tok-rotated-0e8c4a2f6d1b7395";

/// A migrated, initialised store on a new database of `pg`, with an admin token.
fn shared_store(pg: &Postgres, db: &str) -> (Cli, String) {
    let url = pg.create_db(db);
    let cli = Cli::shared(&url);
    let out = cli.ok(&["store", "migrate"], None);
    assert!(
        text(&out).contains(&format!(
            "from version 0 to {}",
            latchkey_host::store::postgres::SCHEMA_VERSION
        )),
        "{}",
        text(&out)
    );
    cli.ok(&["init"], None);
    let token = cli.admin_token();
    (cli, token)
}

/// A host of the store: its own directory (cache, registry), the shared database.
fn host(cli: &Cli) -> Server {
    let data = cli.path("server");
    // These tests are about the store, not the per-principal rate limit: the kill -9 test
    // reads back every write it got acknowledged, hundreds in a second.
    let s = Server::start(
        cli,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--requests-per-second",
            "100000",
        ],
    );
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let r = s
        .req("POST", "/v1/components?name=probe", Some(&admin_of(cli)))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    s
}

/// The admin token the test keeps in the host's directory.
fn admin_of(cli: &Cli) -> String {
    std::fs::read_to_string(cli.path("admin.token")).unwrap()
}

fn put_secret(
    s: &Server,
    token: &str,
    key: &str,
    value: &str,
    up: &Upstream,
) -> reqwest::blocking::Response {
    s.json(
        "PUT",
        &format!("/v1/secrets/{key}?scope=workspace:default"),
        token,
        json!({"value": value, "binding": {"hosts": [format!("127.0.0.1:{}", up.port())], "inject": ["header:authorization"], "allow_http": true}}),
    )
}

fn rotate(s: &Server, token: &str, key: &str, value: &str) -> reqwest::blocking::Response {
    s.json(
        "POST",
        &format!("/v1/secrets/{key}/rotate?scope=workspace:default"),
        token,
        json!({"value": value}),
    )
}

/// Runs the probe, which fetches `path` from the upstream with `key` as a bearer token.
fn run_fetch(s: &Server, token: &str, key: &str, url: &str, twice: bool) -> Value {
    let action = if twice { "fetch_twice" } else { "fetch" };
    let r = s.json(
        "POST",
        "/v1/runs",
        token,
        json!({"component": "probe", "input": {"action": action, "url": url, "key": key}, "wait": true}),
    );
    assert_eq!(r.status(), StatusCode::OK);
    r.json().unwrap()
}

/// Two hosts of one store, with the admin token saved for [`admin_of`].
fn two_hosts(pg: &Postgres, db: &str) -> (Cli, Cli, String, Server, Server) {
    let (a_cli, admin) = shared_store(pg, db);
    std::fs::write(a_cli.path("admin.token"), &admin).unwrap();
    let b_cli = a_cli.another_host();
    std::fs::write(b_cli.path("admin.token"), &admin).unwrap();
    let a = host(&a_cli);
    let b = host(&b_cli);
    (a_cli, b_cli, admin, a, b)
}

#[test]
fn a_secret_set_on_one_host_runs_on_another_and_a_rotation_is_seen_by_the_next_call() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "share");
    a_cli.never_prints(VALUE);
    a_cli.never_prints(ROTATED);
    assert_eq!(
        put_secret(&a, &admin, "TOKEN", VALUE, &up).status(),
        StatusCode::CREATED
    );

    let v = run_fetch(&b, &admin, "TOKEN", &up.url("/echo"), false);
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        up.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );

    // Rotated on A: B's next call (a run that started afterwards) uses the new value.
    assert_eq!(
        rotate(&a, &admin, "TOKEN", ROTATED).status(),
        StatusCode::OK
    );
    let v = run_fetch(&b, &admin, "TOKEN", &up.url("/echo"), false);
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        up.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {ROTATED}").as_str()),
        "host B used a value rotated away on host A"
    );

    // And the metadata and audit trail agree on both hosts.
    let meta: Value = b.get("/v1/secrets/TOKEN", &admin).json().unwrap();
    assert_eq!(meta["version"], 2, "{meta}");
    let verify = a_cli.ok(&["audit", "verify"], None);
    assert!(text(&verify).ends_with("ok\n"), "{}", text(&verify));
    for s in [&a, &b] {
        let printed = s.printed();
        assert!(
            !printed.contains(VALUE) && !printed.contains(ROTATED),
            "a host printed a value"
        );
    }
}

#[test]
fn a_quota_holds_across_two_hosts_counting_each_request_once() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (_a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "quota");
    let r = a.json(
        "PUT",
        "/v1/secrets/TOKEN?scope=workspace:default",
        &admin,
        json!({"value": VALUE, "binding": {"hosts": [format!("127.0.0.1:{}", up.port())], "inject": ["header:authorization"], "allow_http": true}, "quota": {"per_day": 6}}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);

    // Twelve runs, alternating hosts and partly concurrent: six requests may leave in all.
    let hosts = [&a, &b];
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let s = hosts[i % 2];
                let (admin, url) = (&admin, up.url("/echo"));
                scope.spawn(move || run_fetch(s, admin, "TOKEN", &url, false))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results
        .iter()
        .filter(|v| v["status"] == "succeeded")
        .count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|v| v["status"] != "succeeded" && v.to_string().contains("quota"))
        .collect();
    assert_eq!(
        up.request_count(),
        6,
        "the upstream saw {} requests",
        up.request_count()
    );
    assert_eq!((ok, refused.len()), (6, 6), "{results:?}");
}

#[test]
fn a_member_removed_on_one_host_loses_their_secrets_and_tokens_on_the_other() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (_a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "members");
    let r = a.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "alice", "role": "admin"}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let alice = r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        put_secret(&a, &alice, "ALICE_KEY", VALUE, &up).status(),
        StatusCode::CREATED
    );
    let v = run_fetch(&a, &admin, "ALICE_KEY", &up.url("/echo"), false);
    assert_eq!(v["status"], "succeeded", "{v}");

    let r = b
        .req("DELETE", "/v1/members/alice", Some(&admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let removed: Value = r.json().unwrap();
    assert_eq!(removed["deleted"].as_array().unwrap().len(), 1, "{removed}");

    // On A, the secret is gone at the next call, and alice's token no longer works.
    let v = run_fetch(&a, &admin, "ALICE_KEY", &up.url("/echo"), false);
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v.to_string().contains("missing-credential"), "{v}");
    assert_eq!(
        a.get("/v1/whoami", &alice).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_token_revoked_through_one_host_is_refused_by_the_other_at_its_next_request() {
    let pg = Postgres::start();
    let (_a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "revoke");
    let r = a.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "carol", "role": "runner"}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().unwrap();
    let (carol, id) = (
        created["token"].as_str().unwrap().to_owned(),
        created["meta"]["id"].as_str().unwrap().to_owned(),
    );
    // Both hosts have authenticated it (and may keep its record) before the revocation.
    for s in [&a, &b, &a, &b] {
        assert_eq!(s.get("/v1/whoami", &carol).status(), StatusCode::OK);
    }
    let r = a
        .req("DELETE", &format!("/v1/tokens/{id}"), Some(&admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The very next request on the other host is refused, and on the revoking one too.
    assert_eq!(
        b.get("/v1/whoami", &carol).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.get("/v1/whoami", &carol).status(),
        StatusCode::UNAUTHORIZED
    );
    // The admin token, kept by both, still works on both.
    assert_eq!(b.get("/v1/whoami", &admin).status(), StatusCode::OK);
}

#[test]
fn two_admins_rotating_at_once_on_two_hosts_get_one_success_and_one_conflict() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (_a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "cas");
    assert_eq!(
        put_secret(&a, &admin, "TOKEN", VALUE, &up).status(),
        StatusCode::CREATED
    );
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut ok = 0u64;
    let mut conflicts = 0;
    // A race is not certain in any one round; 200 rounds without one would mean none can
    // happen (or that conflicts are not reported).
    for round in 0..200 {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let (barrier, admin) = (barrier.clone(), admin.clone());
                std::thread::spawn(move || {
                    let value = format!("tok-round-{round}-host-{i}-7c3e9a1f5b");
                    barrier.wait();
                    let r = rotate(&s, &admin, "TOKEN", &value);
                    let status = r.status();
                    (status, r.json::<Value>().unwrap())
                })
            })
            .collect();
        for h in handles {
            let (status, body) = h.join().unwrap();
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => {
                    conflicts += 1;
                    assert_eq!(body["error"], "conflict", "{body}");
                    let m = body["message"].as_str().unwrap();
                    assert!(
                        m.contains("changed by someone else") && m.contains("nothing was written"),
                        "{m}"
                    );
                }
                other => panic!("rotation answered {other}: {body}"),
            }
        }
        if conflicts > 0 && round >= 20 {
            break;
        }
    }
    assert!(
        conflicts > 0,
        "200 rounds of simultaneous rotations never conflicted"
    );
    // Every success, and only those, made a version.
    let meta: Value = a.get("/v1/secrets/TOKEN", &admin).json().unwrap();
    assert_eq!(meta["version"], 1 + ok, "{meta}");
}

#[test]
fn kill_9_of_a_host_mid_write_loses_nothing_acknowledged() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (_a_cli, _b_cli, admin, a, b) = two_hosts(&pg, "kill");
    let a = Arc::new(std::sync::Mutex::new(Some(a)));
    let url = a.lock().unwrap().as_ref().unwrap().url.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writers keep putting secrets on A; A is killed while they do.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, admin, stop) = (url.clone(), admin.clone(), stop.clone());
            let port = up.port();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("K{w}_{i}");
                    let r = http
                        .put(format!("{url}/v1/secrets/{key}?scope=workspace:default"))
                        .bearer_auth(&admin)
                        .json(&json!({"value": VALUE, "binding": {"hosts": [format!("127.0.0.1:{port}")], "inject": ["header:authorization"], "allow_http": true}}))
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => acked.push(key),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    {
        let mut guard = a.lock().unwrap();
        let s = guard.as_mut().unwrap();
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "too few writes before the kill: {}",
        acked.len()
    );
    for key in &acked {
        let d = b.get(&format!("/v1/secrets/{key}"), &admin);
        assert_eq!(
            d.status(),
            StatusCode::OK,
            "{key} was acknowledged by A, then lost"
        );
    }
    let v = run_fetch(&b, &admin, &acked[acked.len() - 1], &up.url("/echo"), false);
    assert_eq!(v["status"], "succeeded", "{v}");
}

#[test]
fn a_database_restarted_during_a_run_gives_a_clear_error_and_the_next_run_succeeds() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (_a_cli, _b_cli, admin, a, _b) = two_hosts(&pg, "restart");
    assert_eq!(
        put_secret(&a, &admin, "TOKEN", VALUE, &up).status(),
        StatusCode::CREATED
    );
    let a = Arc::new(a);
    // A run whose first call is slow: the database goes away while it waits.
    let run = {
        let (a, admin, url) = (a.clone(), admin.clone(), up.url("/slow?ms=1500"));
        std::thread::spawn(move || run_fetch(&a, &admin, "TOKEN", &url, true))
    };
    while up.request_count() < 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    pg.stop();
    let v = run.join().unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let error = v.to_string();
    assert!(
        error.contains(&format!(
            "the database postgres://latchkey@127.0.0.1:{}/restart is unavailable",
            pg.port
        )),
        "{error}"
    );
    // While it is down, the API says so (503), naming the database.
    let r = a.get("/v1/secrets", &admin);
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().unwrap().contains("is unavailable"));

    pg.start_again();
    let v = run_fetch(&a, &admin, "TOKEN", &up.url("/echo"), false);
    assert_eq!(
        v["status"], "succeeded",
        "the first run after the restart failed: {v}"
    );
}

#[test]
fn the_database_dump_holds_no_value_in_clear() {
    let pg = Postgres::start();
    let up = Upstream::start_blocking().unwrap();
    let (a_cli, admin) = shared_store(&pg, "dump");
    let values = [VALUE, ROTATED, "tok-cli-set-4d2b8f0a6c1e9375"];
    let s = Server::start(
        &a_cli,
        &["--data-dir", a_cli.path("server").to_str().unwrap()],
    );
    assert_eq!(
        put_secret(&s, &admin, "ONE", values[0], &up).status(),
        StatusCode::CREATED
    );
    assert_eq!(
        rotate(&s, &admin, "ONE", values[1]).status(),
        StatusCode::OK
    );
    drop(s);
    let out = a_cli.secret_set(
        "TWO",
        values[2],
        "api.example.com",
        "header:authorization",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dump = pg.dump("dump");
    assert!(
        dump.contains("latchkey_secrets") && dump.contains("latchkey_audit"),
        "{dump}"
    );
    for v in values {
        assert!(!dump.contains(v), "the dump holds a value in clear");
        assert!(
            !dump.contains(&hex(v.as_bytes())),
            "the dump holds a value in hex"
        );
    }
    // The token is not there either (only its HMAC is).
    assert!(!dump.contains(&admin) && !dump.contains(&hex(admin.as_bytes())));
    // What the database does hold: metadata, versions, ciphertext.
    assert_eq!(
        pg.sql(
            "dump",
            "SELECT scope, key, version FROM latchkey_secrets ORDER BY key"
        ),
        "workspace:default|ONE|2\nworkspace:default|TWO|1\n"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn migrate_is_needed_once_and_a_store_copies_between_sled_and_postgres() {
    let pg = Postgres::start();
    let url = pg.create_db("copy");
    // No schema yet: a clear message saying what to run.
    let fresh = Cli::shared(&url);
    let out = fresh.run(&["init"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("run `latchkey store migrate` first"),
        "{}",
        text(&out)
    );
    fresh.ok(&["store", "migrate"], None);
    let again = fresh.ok(&["store", "migrate"], None);
    assert!(
        text(&again).contains(&format!(
            "up to date (version {})",
            latchkey_host::store::postgres::SCHEMA_VERSION
        )),
        "{}",
        text(&again)
    );

    // A sled store with a secret and a token, copied into the database, then back.
    let sled = Cli::new();
    let out = sled.secret_set(
        "TOKEN",
        VALUE,
        "api.example.com",
        "header:authorization",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    sled.ok(
        &["token", "create", "--name", "ci", "--role", "runner"],
        None,
    );
    let store = sled.path("store");
    let out = sled.ok(
        &[
            "store",
            "copy",
            "--from",
            store.to_str().unwrap(),
            "--to",
            &url,
        ],
        None,
    );
    let shown = text(&out);
    assert!(shown.contains("copied 1 secrets record(s)"), "{shown}");
    assert!(
        shown.contains("1 secret(s), 0 damaged") && shown.contains("0 problem(s)"),
        "{shown}"
    );

    let shared = sled_key_for(&sled, &url);
    let out = shared.ok(&["store", "verify"], None);
    assert!(
        text(&out).contains("1 record(s), 0 damaged"),
        "{}",
        text(&out)
    );
    let listed = shared.ok(&["secret", "list"], None);
    assert!(text(&listed).contains("TOKEN"), "{}", text(&listed));
    shared.ok(&["audit", "verify"], None);
    // The copy refuses a target that already holds a store.
    let out = sled.run(
        &[
            "store",
            "copy",
            "--from",
            store.to_str().unwrap(),
            "--to",
            &url,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    // And back into a new sled directory.
    let back = sled.path("back");
    let out = sled.ok(
        &[
            "store",
            "copy",
            "--from",
            &url,
            "--to",
            back.to_str().unwrap(),
        ],
        None,
    );
    assert!(text(&out).contains("0 damaged"), "{}", text(&out));
    let out = sled.ok(
        &["--store", back.to_str().unwrap(), "store", "verify"],
        None,
    );
    assert!(
        text(&out).contains("1 record(s), 0 damaged"),
        "{}",
        text(&out)
    );
    sled.ok(
        &["--store", back.to_str().unwrap(), "audit", "verify"],
        None,
    );
}

/// A client of the shared store `url` with `cli`'s master key.
fn sled_key_for(cli: &Cli, url: &str) -> Cli {
    let shared = Cli::shared(url);
    std::fs::copy(cli.path("master.key"), shared.path("master.key")).unwrap();
    shared
}

/// A reader keeping up with the shared audit trail (the last-use index of every host) sees
/// what any host appends after its last read, and nothing twice.
#[test]
fn appended_records_are_read_from_where_the_last_read_ended_across_hosts() {
    use latchkey_host::store::Backend;
    use latchkey_host::store::postgres::PostgresBackend;
    let pg = Postgres::start();
    let url = pg.create_db("appended");
    PostgresBackend::migrate(&url).unwrap();
    let (a, b) = (
        PostgresBackend::open(&url).unwrap(),
        PostgresBackend::open(&url).unwrap(),
    );
    let values = |r: &[(Vec<u8>, Vec<u8>)]| r.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let (none, cursor) = a.scan_appended_since("audit", b"").unwrap();
    assert!(none.is_empty());
    a.append("audit", b"one").unwrap();
    b.append("audit", b"two").unwrap();
    let (first, cursor) = a.scan_appended_since("audit", &cursor).unwrap();
    assert_eq!(values(&first), [b"one".to_vec(), b"two".to_vec()]);
    b.append("audit", b"three").unwrap();
    let (next, cursor) = a.scan_appended_since("audit", &cursor).unwrap();
    assert_eq!(values(&next), [b"three".to_vec()]);
    assert!(
        a.scan_appended_since("audit", &cursor)
            .unwrap()
            .0
            .is_empty()
    );
    let mut both = first;
    both.extend(next);
    assert_eq!(both, a.scan("audit", b"").unwrap());
}

/// A secret store opened directly on a new, migrated database `db` of `pg`.
fn secret_store_on(pg: &Postgres, db: &str) -> latchkey_host::store::SecretStore {
    use latchkey_host::store::postgres::PostgresBackend;
    use latchkey_host::store::{MasterKey, SecretStore};
    let url = pg.create_db(db);
    PostgresBackend::migrate(&url).unwrap();
    SecretStore::init_with(
        Box::new(PostgresBackend::open(&url).unwrap()),
        "pg",
        &MasterKey::generate().unwrap(),
    )
    .unwrap()
}

/// Audit appends commit without waiting for PostgreSQL's WAL flush; `flush` (strict
/// durability, a change's record) makes every one before it durable: a crash of the
/// database right after loses none of them. After a crash that lost an unflushed tail,
/// appends go on after what the database kept, and the loss shows in `audit verify`.
#[test]
fn flushed_appends_survive_a_crash_of_the_database_and_a_lost_tail_is_reported() {
    use latchkey_host::audit::{self, AuditEvent, AuditRecord};
    let pg = Postgres::start();
    let s = secret_store_on(&pg, "crash");
    let record =
        |i: usize| AuditRecord::change(AuditEvent::SecretSet, "bob", &format!("K{i}"), "ok");
    let count = || {
        pg.sql("crash", "SELECT count(*) FROM latchkey_audit")
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let before = count();
    for i in 0..300 {
        audit::append(&s, &record(i)).unwrap();
    }
    audit::flush(&s).unwrap();
    pg.crash();
    pg.start_again();
    assert_eq!(count(), before + 300, "a flushed append was lost");

    // Unflushed appends, then a crash: the next append goes in after what the database
    // kept (not after the record this host remembers appending), and a tail the crash lost
    // is reported by `audit verify` as missing, never passed over.
    for i in 0..300 {
        audit::append(&s, &record(i)).unwrap();
    }
    pg.crash();
    pg.start_again();
    let kept = count();
    // The first call after the restart reconnects (a write on the dead connection may fail).
    let _ = audit::read_all(&s);
    audit::append(&s, &record(1000)).unwrap();
    assert_eq!(count(), kept + 1);
    let report = audit::verify(&s).unwrap();
    assert_eq!(
        report.is_intact(),
        kept == before + 600,
        "kept {kept} of {}: {report:?}",
        before + 600
    );
}

/// On PostgreSQL, an unchained (legacy-format) audit row put at an id below the chain's
/// first one -- the ids moved up to make room -- is reported as inserted: the store was
/// born chained, and its genesis marker (in `latchkey_meta`) says so.
#[test]
fn an_unchained_row_put_below_the_chain_in_postgres_is_reported_as_inserted() {
    use latchkey_host::audit::{self, AuditEvent, AuditRecord, Problem};
    let pg = Postgres::start();
    let s = secret_store_on(&pg, "genesis");
    for i in 0..3 {
        audit::append(
            &s,
            &AuditRecord::change(AuditEvent::SecretSet, "bob", &format!("K{i}"), "ok"),
        )
        .unwrap();
    }
    assert!(audit::verify(&s).unwrap().is_intact());
    assert_eq!(
        pg.sql(
            "genesis",
            "SELECT count(*) FROM latchkey_meta WHERE id = 'audit-genesis'::bytea"
        )
        .trim(),
        "1"
    );
    let forged = serde_json::to_string(&AuditRecord::change(
        AuditEvent::SecretRotate,
        "alice",
        "PROD_DB",
        "ok",
    ))
    .unwrap();
    pg.sql("genesis", "UPDATE latchkey_audit SET id = id + 10");
    pg.sql(
        "genesis",
        &format!(
            "INSERT INTO latchkey_audit (id, record) VALUES (2, convert_to('{}', 'UTF8'))",
            forged.replace('\'', "''")
        ),
    );
    let report = audit::verify(&s).unwrap();
    assert_eq!(report.records, 4);
    assert!(
        !report.is_intact(),
        "an unchained row below the chain passed: {report:?}"
    );
    assert_eq!(
        report
            .first_broken()
            .map(|f| (f.position, f.problem.clone())),
        Some((0, Problem::UnchainedInChainedStore)),
        "{:?}",
        report.findings
    );
    assert_eq!(report.legacy, 0);
}

/// Resolution reads every tier's record of a key in one round trip on PostgreSQL, afresh
/// at every call: a key added in a higher tier, its rotation and its deletion, each made
/// through host A, are what host B resolves and decrypts at its next call.
#[test]
fn each_change_made_through_one_host_is_what_another_resolves_at_its_next_call() {
    use latchkey_host::policy::{Binding, HostPattern, InjectLocation};
    use latchkey_host::resolve::{RunContext, Tier, resolve_and_decrypt_for_bench};
    use latchkey_host::secret::{CredentialKey, SecretValue};
    use latchkey_host::store::SecretStore;
    use latchkey_host::store::{Location, MasterKey, PostgresBackend, Scope, SecretSpec};

    let pg = Postgres::start();
    let url = pg.create_db("tiers");
    PostgresBackend::migrate(&url).unwrap();
    let master = MasterKey::generate().unwrap();
    let location = Location::Postgres(url);
    let a = SecretStore::init_at(&location, &master).unwrap();
    let b = SecretStore::open_at(&location, &master).unwrap();
    let spec = || SecretSpec {
        integration: "http".into(),
        binding: Binding::new(
            vec![HostPattern::parse("api.example.com").unwrap()],
            vec![InjectLocation::parse("header:authorization").unwrap()],
            false,
        )
        .unwrap(),
        allow_weak_value: true,
        quota: Default::default(),
        kind: Default::default(),
        oauth: None,
    };
    let value = |v: &str| SecretValue::new(v.as_bytes().to_vec()).unwrap();
    let key = CredentialKey::new("TOKEN").unwrap();
    let ctx = RunContext::single_step("default", "wf", "alice");
    let workspace = Scope::Workspace {
        workspace: "default".into(),
    };
    let user = Scope::UserWorkflow {
        user: "alice".into(),
        workspace: "default".into(),
        workflow: "wf".into(),
    };
    let on_b = || {
        let r = resolve_and_decrypt_for_bench(&b, &ctx, &key).unwrap();
        (r.tier, r.meta.version)
    };

    a.set(&workspace, &key, value(VALUE), spec(), "admin")
        .unwrap();
    assert_eq!(on_b(), (Tier::Workspace, 1));
    // A key in the first tier, set through A, wins on B at once.
    a.set(&user, &key, value(VALUE), spec(), "admin").unwrap();
    assert_eq!(on_b(), (Tier::UserWorkflow, 1));
    // Rotated through A: B decrypts the new version at its next call.
    a.rotate(&user, &key, value(ROTATED), false, "admin")
        .unwrap();
    assert_eq!(on_b(), (Tier::UserWorkflow, 2));
    // Deleted through A: B falls back to the workspace's key.
    a.delete(&user, &key, "admin").unwrap();
    assert_eq!(on_b(), (Tier::Workspace, 1));
}
