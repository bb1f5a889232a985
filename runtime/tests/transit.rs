//! The data key wrapped by an OpenBao Transit key (a real `bao server -dev` on 127.0.0.1):
//! no master key on the host, the store opens only while Transit unwraps for it, a wrong
//! or revoked key fails at start with a message naming the cause, and `store rotate-master`
//! re-wraps under the newest Transit key version.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::openbao::OpenBao;
use harness::{Cli, text};
use serde_json::json;
use std::process::Output;

const VALUE: &str = "tok-transit-3c9e1a7f5b2d6084";

/// `latchkey ARGS` with the Transit key `key` at `bao` and `token`.
fn with_transit(cli: &Cli, bao: &OpenBao, key: &str, token: &str, args: &[&str]) -> Output {
    let mut c = cli.command(args);
    c.env("LATCHKEY_TRANSIT_ADDR", &bao.addr)
        .env("LATCHKEY_TRANSIT_KEY", key)
        .env("LATCHKEY_TRANSIT_TOKEN", token);
    let stdin = args.contains(&"set").then(|| format!("{VALUE}\n"));
    cli.output(c, stdin.as_deref().map(str::as_bytes))
}

fn ok(out: Output) -> String {
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    shown
}

fn fails(out: Output, expect: &str) {
    let shown = text(&out);
    assert!(!out.status.success(), "expected a failure: {shown}");
    assert!(shown.contains(expect), "expected {expect:?} in: {shown}");
}

#[test]
fn a_store_wrapped_by_transit_opens_only_while_transit_unwraps_its_data_key() {
    let bao = OpenBao::start();
    bao.create_key("latchkey");
    bao.create_key("other");
    let token = bao.token_for("latchkey");
    let cli = Cli::uninitialised();
    cli.never_prints(VALUE);
    cli.never_prints(&token);

    let shown = ok(with_transit(&cli, &bao, "latchkey", &token, &["init"]));
    assert!(
        shown.contains("wrapped by the OpenBao/Vault Transit key \"latchkey\""),
        "{shown}"
    );
    assert!(
        !cli.path("master.key").exists(),
        "init wrote a master key file"
    );
    ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &[
            "secret",
            "set",
            "TOKEN",
            "--allow-host",
            "api.example.com",
            "--inject",
            "header:authorization",
        ],
    ));
    let shown = ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["store", "verify"],
    ));
    assert!(shown.contains("1 record(s), 0 damaged"), "{shown}");

    // Another Transit key, or no Transit at all: refused at once, naming what wraps it.
    fails(
        with_transit(&cli, &bao, "other", &token, &["secret", "list"]),
        "wrapped by the OpenBao/Vault Transit key \"latchkey\", but the OpenBao/Vault Transit key \"other\"",
    );
    std::fs::write(cli.path("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(
        cli.path("master.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    fails(
        cli.run(&["secret", "list"], None),
        "wrapped by the OpenBao/Vault Transit key \"latchkey\"",
    );

    // The Transit key rotates; once old versions may no longer decrypt, the store fails at
    // start with Transit's own reason, until rotate-master re-wraps it.
    bao.call("POST", "transit/keys/latchkey/rotate", json!({}));
    ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["secret", "list"],
    ));
    bao.call(
        "POST",
        "transit/keys/latchkey/config",
        json!({"min_decryption_version": 2}),
    );
    fails(
        with_transit(&cli, &bao, "latchkey", &token, &["secret", "list"]),
        "refused to unwrap the data key",
    );
    bao.call(
        "POST",
        "transit/keys/latchkey/config",
        json!({"min_decryption_version": 1}),
    );
    let shown = ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["store", "rotate-master"],
    ));
    assert!(shown.contains("newest version"), "{shown}");
    bao.call(
        "POST",
        "transit/keys/latchkey/config",
        json!({"min_decryption_version": 2}),
    );
    let shown = ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["secret", "list"],
    ));
    assert!(shown.contains("TOKEN"), "{shown}");

    // A revoked token: `latchkey serve` fails at start, saying Transit refused.
    bao.revoke(&token);
    fails(
        with_transit(
            &cli,
            &bao,
            "latchkey",
            &token,
            &["serve", "--listen", "127.0.0.1:0"],
        ),
        "refused to unwrap the data key: HTTP 403",
    );
}

#[test]
fn a_store_moves_from_its_master_key_to_transit() {
    let bao = OpenBao::start();
    bao.create_key("latchkey");
    let token = bao.token_for("latchkey");
    let cli = Cli::new();
    let out = cli.secret_set(
        "TOKEN",
        VALUE,
        "api.example.com",
        "header:authorization",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["store", "rotate-master", "--to-transit"],
    ));
    assert!(shown.contains("no longer opens the store"), "{shown}");
    // The old master key file no longer opens it; Transit does.
    fails(
        cli.run(&["secret", "list"], None),
        "wrapped by the OpenBao/Vault Transit key",
    );
    let shown = ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["store", "verify"],
    ));
    assert!(shown.contains("1 record(s), 0 damaged"), "{shown}");
    // The audit trail (its key derives from the data key, which did not change) verifies.
    ok(with_transit(
        &cli,
        &bao,
        "latchkey",
        &token,
        &["audit", "verify"],
    ));
}
