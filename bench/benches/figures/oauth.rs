//! Figure 11 (`oauth`): a step making one fetch with an `oauth2` credential against the
//! same step with a static bearer, in the same run: with the access token cached (the
//! steady state: token read and opened from the store, client parsed for scrubbing) and
//! with a refresh at every call (`expires_in: 0` from the loopback fake provider, which
//! rotates the refresh token, so each call also stores a new version of the credential).

use super::{CMD, POOL, ns_to_us, print, read_guest, runtime};
use anyhow::{Result, bail};
use latchkey_bench::{Figure, Samples};
use latchkey_host::policy::{Binding, Grant, HostPattern, InjectLocation, TokenEndpoint};
use latchkey_host::resolve::RunContext;
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{CredentialKind, SecretSpec};
use latchkey_tests::token_endpoint::FakeProvider;
use latchkey_tests::{TestStore, workspace};
use std::time::Instant;

const CLIENT_ID: &str = "bench-app";
const CLIENT_SECRET: &str = "cs/Bq+4wk!7Lm#9Vp$2Rt5Yx&8Hn";
const REFRESH: &str = "rt/bench+0f1e2d3c4b5a6978";

fn put_oauth(ts: &TestStore, key: &str, p: &FakeProvider) -> Result<()> {
    let value = serde_json::json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH});
    ts.store.set(
        &workspace(),
        &CredentialKey::new(key)?,
        SecretValue::new(value.to_string().into_bytes())?,
        SecretSpec {
            integration: "http".into(),
            binding: Binding::new(
                vec![HostPattern::parse("127.0.0.1:*")?],
                vec![InjectLocation::parse("header:authorization")?],
                true,
            )?,
            allow_weak_value: false,
            quota: Default::default(),
            kind: CredentialKind::OAuth2,
            oauth: Some(TokenEndpoint::new(
                &p.url("/token"),
                None,
                Grant::RefreshToken,
            )?),
        },
        "bench",
    )?;
    Ok(())
}

pub(crate) async fn figures(iters: usize) -> Result<Vec<Figure>> {
    let cached_provider = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let refreshing = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    refreshing.set_expires_in(0);
    let ts = TestStore::new();
    ts.put(
        &workspace(),
        "STATIC",
        super::TOKEN,
        &["127.0.0.1:*"],
        &["header:authorization"],
    );
    put_oauth(&ts, "CACHED", &cached_provider)?;
    put_oauth(&ts, "REFRESHED", &refreshing)?;
    let rt = runtime(&ts, POOL)?;
    let step = rt.load(&read_guest("probe")?)?;
    let ctx = RunContext::single_step("default", "oauth", "alice");
    let input = |key: &str, p: &FakeProvider| {
        serde_json::json!({"action": "fetch", "url": p.url("/api/ok"), "key": key}).to_string()
    };
    let inputs = [
        input("STATIC", &cached_provider),
        input("CACHED", &cached_provider),
        input("REFRESHED", &refreshing),
    ];
    for i in &inputs {
        let out = rt
            .run(&step, &ctx, i)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !out.output.contains("\"status\":200") {
            bail!("the oauth figure's step did not get a 200: {}", out.output);
        }
    }
    let mut samples: Vec<Samples> = inputs.iter().map(|_| Samples::default()).collect();
    for round in 0..25 {
        for (v, i) in inputs.iter().enumerate() {
            for _ in 0..(iters / 20).max(5) {
                let t = Instant::now();
                let out = rt
                    .run(&step, &ctx, i)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                std::hint::black_box(out);
                if round >= 5 {
                    samples[v].push(t.elapsed());
                }
            }
        }
    }
    let refreshes = refreshing.token_requests().len();
    if cached_provider.token_requests().len() != 1 {
        bail!("the cached token was refreshed again");
    }
    let [st, cached, refreshed] = &mut samples[..] else {
        unreachable!("three variants")
    };
    let notes = format!(
        "probe guest, one GET to the loopback fake provider's /api/ok with Authorization: Bearer; whole runs, sampled in alternating blocks; medians: static {:.1} us (p99 {:.1}), oauth2 cached {:.1} us (p99 {:.1}), oauth2 refreshed at every call {:.1} us (p99 {:.1}; {refreshes} refreshes, each storing a rotated refresh token); {} samples each",
        ns_to_us(st.median()),
        ns_to_us(st.p99()),
        ns_to_us(cached.median()),
        ns_to_us(cached.p99()),
        ns_to_us(refreshed.median()),
        ns_to_us(refreshed.p99()),
        st.len(),
    );
    let figure = |name: &str, s: &mut Samples, base: f64| Figure {
        name: name.into(),
        median: ns_to_us(s.median()),
        p99: ns_to_us(s.p99()),
        unit: "us".into(),
        baseline_median: Some(ns_to_us(base)),
        ratio: Some(s.median() / base),
        target: "report".into(),
        met: None,
        command: format!("{CMD} oauth"),
        notes: notes.clone(),
    };
    let base = st.median();
    let figures = vec![
        figure("oauth2_cached_token_fetch_vs_static_fetch", cached, base),
        figure(
            "oauth2_refresh_every_call_fetch_vs_static_fetch",
            refreshed,
            base,
        ),
    ];
    for f in &figures {
        print(f);
    }
    Ok(figures)
}
