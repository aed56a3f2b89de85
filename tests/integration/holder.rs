//! Holder key reveal end to end over HTTP on the sandbox: a wallet signs its challenge and gets
//! its key exactly once; wrong signatures, replays, expired or foreign challenges reveal nothing
//! and are audited; a signed rotation replaces the key; the per-address limit answers 429.
//! Also `/metrics`: authenticated, parseable Prometheus text describing what happened.

use std::collections::BTreeSet;

use creditbrain::ops;
use creditbrain_actors::store::reveal::{Challenge, ChallengePurpose};
use serde_json::{Value, json};
use solana_sdk::signature::{Keypair, Signer};

use crate::support::{SANDBOX_API_TOKEN, SandboxDaemon};

/// A daemon whose signer (whose keypair the test has) holds a key.
async fn daemon_with_owner_key(extra: &[(&str, &str)]) -> (SandboxDaemon, String) {
    let daemon = SandboxDaemon::start(6, extra).await;
    let wallet = daemon.run_owner_only().await;
    (daemon, wallet)
}

async fn get(daemon: &SandboxDaemon, path: &str) -> (u16, Value) {
    let response = daemon.http.get(daemon.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post(daemon: &SandboxDaemon, path: &str, body: &Value) -> (u16, Value) {
    let response = daemon
        .http
        .post(daemon.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn challenge(daemon: &SandboxDaemon, wallet: &str, purpose: &str) -> (String, String) {
    let (status, body) = get(
        daemon,
        &format!("/holder/challenge?wallet={wallet}&purpose={purpose}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purpose"], purpose);
    let message = body["message"].as_str().unwrap().to_string();
    assert!(message.contains(wallet), "{message}");
    (body["nonce"].as_str().unwrap().to_string(), message)
}

fn signed(wallet: &str, nonce: &str, signer: &Keypair, message: &str) -> Value {
    json!({
        "wallet": wallet,
        "nonce": nonce,
        "signature": signer.sign_message(message.as_bytes()).to_string(),
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The masked label OpenRouter keeps of a plaintext key (`sk-or-v1-abc...f90`).
fn masked(plaintext: &str) -> String {
    format!(
        "{}...{}",
        &plaintext[..12],
        &plaintext[plaintext.len() - 3..]
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_challenge_reveals_the_key_once_and_a_signed_rotation_replaces_it() {
    let (daemon, wallet) = daemon_with_owner_key(&[("HOLDER_RATE_LIMIT_PER_MIN", "1000")]).await;
    let store = daemon.daemon.handle.store.clone();
    let signer = &daemon.sandbox.world.signer;
    let stranger = Keypair::new();
    let key_before = ops::list_keys(&daemon.daemon.handle, None, Some(&wallet))
        .await
        .unwrap();
    assert_eq!(key_before.len(), 1);
    assert!(key_before[0].awaiting_reveal);

    // Bad requests: named, nothing revealed.
    assert_eq!(
        code(&get(&daemon, "/holder/challenge?wallet=nope").await.1),
        "invalid_wallet"
    );
    assert_eq!(
        code(
            &get(
                &daemon,
                &format!("/holder/challenge?wallet={wallet}&extra=1")
            )
            .await
            .1
        ),
        "invalid_query"
    );
    let (status, body) = get(
        &daemon,
        &format!("/holder/challenge?wallet={}", stranger.pubkey()),
    )
    .await;
    assert_eq!((status, code(&body)), (404, "no_keys_for_wallet"));

    let (nonce, message) = challenge(&daemon, &wallet, "reveal").await;
    // A stranger's signature, a signature of another text, garbage, unknown fields.
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &signed(&wallet, &nonce, &stranger, &message),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "signature_invalid"));
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &signed(&wallet, &nonce, signer, &format!("{message}!")),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "signature_invalid"));
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &json!({"wallet": wallet, "nonce": nonce, "signature": "0OIl"}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_signature_encoding"));
    let mut with_extra = signed(&wallet, &nonce, signer, &message);
    with_extra["key"] = json!("please");
    let (status, body) = post(&daemon, "/holder/key", &with_extra).await;
    assert_eq!((status, code(&body)), (400, "invalid_body"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("key"),
        "{body}"
    );
    // Someone else's nonce is as unknown as a made-up one.
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &signed(&stranger.pubkey().to_string(), &nonce, &stranger, &message),
    )
    .await;
    assert_eq!((status, code(&body)), (404, "challenge_not_found"));
    // A reveal challenge does not authorize a rotation.
    let (status, body) = post(
        &daemon,
        "/holder/rotate",
        &signed(&wallet, &nonce, signer, &message),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "wrong_challenge_purpose"));
    assert!(
        ops::list_keys(&daemon.daemon.handle, None, Some(&wallet))
            .await
            .unwrap()[0]
            .awaiting_reveal,
        "no refusal revealed or erased anything"
    );

    // The holder's signature: the plaintext, once.
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &signed(&wallet, &nonce, signer, &message),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let revealed = &body["keys"].as_array().unwrap()[0];
    let plaintext = revealed["key"].as_str().unwrap().to_string();
    assert!(plaintext.starts_with("sk-or-v1-"));
    assert_eq!(revealed["keyHash"], key_before[0].key_hash.as_str());
    let remote = daemon.sandbox.openrouter.keys();
    let remote_key = remote
        .iter()
        .find(|key| key.hash == key_before[0].key_hash)
        .unwrap();
    assert_eq!(
        remote_key.label,
        masked(&plaintext),
        "the revealed key is OpenRouter's key"
    );
    let after = ops::list_keys(&daemon.daemon.handle, None, Some(&wallet))
        .await
        .unwrap();
    assert!(!after[0].awaiting_reveal && after[0].revealed_at.is_some());

    // Replays and second reveals reveal nothing.
    let (status, body) = post(
        &daemon,
        "/holder/key",
        &signed(&wallet, &nonce, signer, &message),
    )
    .await;
    assert_eq!((status, code(&body)), (409, "challenge_used"));
    let (status, body) = get(&daemon, &format!("/holder/challenge?wallet={wallet}")).await;
    assert_eq!((status, code(&body)), (409, "nothing_to_reveal"));

    // An expired challenge, correctly signed, is refused.
    let expired = Challenge {
        nonce: "0123456789abcdef0123".into(),
        wallet: wallet.clone(),
        strategy_id: None,
        purpose: ChallengePurpose::Rotate,
        message: "Replace my CreditBrain OpenRouter key (old)".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        expires_at: "2026-01-01T00:05:00.000Z".into(),
        used_at: None,
    };
    store.insert_challenge(&expired).await.unwrap();
    let (status, body) = post(
        &daemon,
        "/holder/rotate",
        &signed(&wallet, &expired.nonce, signer, &expired.message),
    )
    .await;
    assert_eq!((status, code(&body)), (410, "challenge_expired"));

    // A lost key: a signed rotation replaces it and hands over the new one.
    let (nonce, message) = challenge(&daemon, &wallet, "rotate").await;
    let (status, body) = post(
        &daemon,
        "/holder/rotate",
        &signed(&wallet, &nonce, signer, &message),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let replacement = &body["keys"].as_array().unwrap()[0];
    let new_plaintext = replacement["key"].as_str().unwrap();
    assert_ne!(new_plaintext, plaintext);
    let new_hash = replacement["keyHash"].as_str().unwrap();
    assert_eq!(replacement["limitMicroUsd"], key_before[0].limit_micro_usd);
    let remote = daemon.sandbox.openrouter.keys();
    assert!(
        remote.iter().all(|key| key.hash != key_before[0].key_hash),
        "old key deleted"
    );
    let new_remote = remote.iter().find(|key| key.hash == new_hash).unwrap();
    assert_eq!(new_remote.label, masked(new_plaintext));
    let ledger = ops::list_keys(&daemon.daemon.handle, None, Some(&wallet))
        .await
        .unwrap();
    let statuses: BTreeSet<(String, String)> = ledger
        .iter()
        .map(|key| (key.key_hash.clone(), key.status.clone()))
        .collect();
    assert!(statuses.contains(&(key_before[0].key_hash.clone(), "rotated".into())));
    assert!(statuses.contains(&(new_hash.to_string(), "active".into())));
    assert!(ledger.iter().all(|key| !key.awaiting_reveal));

    // Every attempt is in the audit log; no plaintext ever is.
    let audit = store.recent_audit(500).await.unwrap();
    let refused: Vec<&str> = audit
        .iter()
        .filter(|row| row.action == "holder_request_refused")
        .filter_map(|row| row.details["code"].as_str())
        .collect();
    for expected in [
        "signature_invalid",
        "challenge_used",
        "challenge_expired",
        "wrong_challenge_purpose",
    ] {
        assert!(
            refused.contains(&expected),
            "{expected} not audited: {refused:?}"
        );
    }
    assert_eq!(
        audit
            .iter()
            .filter(|row| row.action == "key_revealed")
            .count(),
        2
    );
    let everything =
        serde_json::to_string(&audit.iter().map(|row| &row.details).collect::<Vec<_>>()).unwrap();
    assert!(
        !everything.contains("sk-or-v1-"),
        "a plaintext key reached the audit log"
    );

    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn holder_requests_are_limited_per_address() {
    let daemon = SandboxDaemon::start(4, &[("HOLDER_RATE_LIMIT_PER_MIN", "2")]).await;
    let wallet = Keypair::new().pubkey();
    for _ in 0..2 {
        let (status, _) = get(&daemon, &format!("/holder/challenge?wallet={wallet}")).await;
        assert_eq!(status, 404);
    }
    let response = daemon
        .http
        .get(daemon.url(&format!("/holder/challenge?wallet={wallet}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "rate_limited");
    daemon.stop().await;
}

/// Checks the Prometheus text format line by line: comments are HELP or TYPE, a family's TYPE
/// precedes its samples, every sample is `name{labels} number`. Returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut typed = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap(), words.next().unwrap());
            assert!(matches!(kind, "HELP" | "TYPE"), "{line}");
            if kind == "TYPE" {
                let metric_type = words.next().unwrap();
                assert!(
                    matches!(metric_type, "counter" | "gauge" | "histogram"),
                    "{line}"
                );
                assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with('}'), "{line}");
                (name, labels.trim_end_matches('}'))
            }
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| typed.contains(*base))
            })
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_authenticated_prometheus_text_describing_the_daemon() {
    let (daemon, _wallet) = daemon_with_owner_key(&[]).await;
    let response = daemon
        .http
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = daemon
        .http
        .get(daemon.url("/metrics"))
        .bearer_auth(SANDBOX_API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing in\n{text}"))
    };
    assert_eq!(value("creditbrain_runs", "state=\"COMPLETE\""), 1.0);
    assert_eq!(value("creditbrain_keys", "status=\"active\""), 1.0);
    assert!(value("creditbrain_granted_micro_usd_total", "") > 0.0);
    assert!(value("creditbrain_claimed_lamports_total", "") > 0.0);
    assert_eq!(value("creditbrain_kill_switch_engaged", ""), 0.0);
    for integration in ["bags", "solana-rpc", "helius-das", "openrouter"] {
        assert_eq!(
            value(
                "creditbrain_breaker_state",
                &format!("integration=\"{integration}\"")
            ),
            0.0
        );
    }
    assert!(
        value(
            "creditbrain_integration_requests_total",
            "integration=\"openrouter\""
        ) > 0.0
    );
    // The run's phases and requests were timed (the registry is process-wide: at least ours).
    for phase in ["CLAIMING", "SWAPPING", "ALLOCATING", "PROVISIONING"] {
        assert!(
            value(
                "creditbrain_run_phase_duration_seconds_count",
                &format!("phase=\"{phase}\",outcome=\"ok\"")
            ) >= 1.0
        );
    }
    assert!(
        value(
            "creditbrain_integration_request_duration_seconds_count",
            "integration=\"bags\",outcome=\"ok\""
        ) >= 1.0
    );
    // The pool was read by the run.
    assert!(value("creditbrain_pool_balance_micro_usd", "") > 0.0);
    daemon.stop().await;
}
