//! Secrets audit (issue 7): a full sandbox day at debug level — a run that creates keys, a
//! holder's reveal and signed rotation, an operator rotation and revoke, a reconcile, refused
//! requests, metrics — and then every log line, the configuration's `Debug`, the database files
//! and every HTTP body are scanned for each secret in each form it could take. None may appear.
//!
//! The log capture is process-wide (the one global subscriber of this test binary), so lines of
//! tests running at the same time are scanned too: any `sk-or-v1-` there is a leak as well.

use std::sync::{Arc, Mutex};

use creditbrain::ops;
use serde_json::{Value, json};
use solana_sdk::signature::Signer;

use crate::support::{SANDBOX_API_TOKEN, SandboxDaemon};

/// The vault key this test sets, so it can look for it.
const ENCRYPTION_KEY_HEX: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7aa01";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every form a secret could leak in: as given, and for byte secrets their base58, base64, hex
/// and JSON-array spellings.
fn forms(name: &str, text: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), text.to_string())]
}

fn byte_forms(name: &str, bytes: &[u8]) -> Vec<(String, String)> {
    use base64::Engine as _;
    let json = serde_json::to_string(bytes).unwrap();
    let debug = format!("{bytes:?}");
    vec![
        (
            format!("{name} (base58)"),
            bs58::encode(bytes).into_string(),
        ),
        (
            format!("{name} (base64)"),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
        (
            format!("{name} (hex)"),
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ),
        (format!("{name} (JSON)"), json),
        (format!("{name} (Debug)"), debug),
    ]
}

fn assert_clean(what: &str, text: &str, secrets: &[(String, String)]) {
    for (name, secret) in secrets {
        assert!(!text.contains(secret.as_str()), "{name} appears in {what}");
    }
    assert!(
        !text.contains("sk-or-v1-"),
        "an OpenRouter key appears in {what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_logs_debug_output_the_database_or_responses() {
    let captured = Captured::default();
    creditbrain::telemetry::init_with("debug", captured.clone());

    let daemon = SandboxDaemon::start(
        6,
        &[
            ("KEY_ENCRYPTION_KEY", ENCRYPTION_KEY_HEX),
            ("HOLDER_RATE_LIMIT_PER_MIN", "1000"),
            ("LOG_LEVEL", "debug"),
        ],
    )
    .await;
    let handle = &daemon.daemon.handle;
    let signer = &daemon.sandbox.world.signer;
    let wallet = signer.pubkey().to_string();
    let mut responses = Vec::<String>::new();

    // A run that creates keys (the owner's among them).
    assert_eq!(daemon.run_owner_only().await, wallet);

    // The holder reveals (after a refused attempt), then replaces the key by signed rotation.
    let mut plaintexts = Vec::new();
    for (purpose, path) in [("reveal", "/holder/key"), ("rotate", "/holder/rotate")] {
        let challenge: Value = daemon
            .http
            .get(daemon.url(&format!(
                "/holder/challenge?wallet={wallet}&purpose={purpose}"
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let message = challenge["message"].as_str().unwrap();
        let forged = solana_sdk::signature::Keypair::new().sign_message(message.as_bytes());
        for signature in [forged, signer.sign_message(message.as_bytes())] {
            let response = daemon
                .http
                .post(daemon.url(path))
                .json(&json!({
                    "wallet": wallet,
                    "nonce": challenge["nonce"],
                    "signature": signature.to_string(),
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            if status == 200 {
                let body: Value = serde_json::from_str(&body).unwrap();
                plaintexts.push(body["keys"][0]["key"].as_str().unwrap().to_string());
            } else {
                responses.push(body);
            }
        }
    }
    assert_eq!(
        plaintexts.len(),
        2,
        "revealed, then replaced: {responses:?}"
    );

    // Operator actions: rotate, reconcile, revoke, metrics, refused API calls.
    let current = ops::list_keys(handle, None, Some(&wallet)).await.unwrap();
    let current = current.iter().find(|key| key.status == "active").unwrap();
    let rotated = ops::rotate_key(handle, &current.key_hash, "test")
        .await
        .unwrap();
    ops::reconcile(handle, true, "test").await.unwrap();
    ops::revoke_key(handle, &rotated.new_key_hash, "test")
        .await
        .unwrap();
    for request in [
        daemon
            .http
            .get(daemon.url("/metrics"))
            .bearer_auth(SANDBOX_API_TOKEN),
        daemon
            .http
            .get(daemon.url("/metrics"))
            .bearer_auth("wrong-token"),
        daemon
            .http
            .get(daemon.url("/api/strategies"))
            .bearer_auth("wrong-token"),
        daemon.http.get(daemon.url("/health/ready")),
    ] {
        responses.push(request.send().await.unwrap().text().await.unwrap());
    }
    responses.push(serde_json::to_string(&ops::stats(handle).await.unwrap()).unwrap());
    responses
        .push(serde_json::to_string(&ops::list_keys(handle, None, None).await.unwrap()).unwrap());

    // What must never show.
    let mut secrets = Vec::new();
    for (name, value) in [
        ("API_AUTH_TOKEN", SANDBOX_API_TOKEN.to_string()),
        ("KEY_ENCRYPTION_KEY", ENCRYPTION_KEY_HEX.to_string()),
        ("BAGS_API_KEY", daemon.sandbox.bags_api_key.clone()),
        ("HELIUS_API_KEY", daemon.sandbox.helius_api_key.clone()),
        (
            "OPENROUTER_MANAGEMENT_KEY",
            daemon.sandbox.openrouter_management_key.clone(),
        ),
    ] {
        secrets.extend(forms(name, &value));
    }
    secrets.extend(byte_forms("signer secret key", &signer.to_bytes()));
    secrets.extend(byte_forms("signer seed", &signer.to_bytes()[..32]));
    for (index, plaintext) in plaintexts.iter().enumerate() {
        secrets.extend(forms(&format!("holder key {index}"), plaintext));
    }

    let config = creditbrain::config::Config::from_vars(&daemon.vars).unwrap();
    assert_clean(
        "the configuration's Debug",
        &format!("{config:?}"),
        &secrets,
    );
    assert_clean(
        "`config check` rows",
        &format!("{:?}", config.describe()),
        &secrets,
    );
    for (index, body) in responses.iter().enumerate() {
        assert_clean(&format!("response {index}"), body, &secrets);
    }
    for file in ["daemon.db", "daemon.db-wal"] {
        let path = daemon.dir.path().join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            assert_clean(file, &String::from_utf8_lossy(&bytes), &secrets);
        }
    }

    daemon.stop().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture saw the day (so a clean scan means something).
    for expected in [
        "\"msg\":\"run finished\"",
        "\"msg\":\"request completed\"",
        "\"level\":\"debug\"",
    ] {
        assert!(
            logs.contains(expected),
            "{expected} not in the captured logs"
        );
    }
    assert_clean("the logs", &logs, &secrets);
}
