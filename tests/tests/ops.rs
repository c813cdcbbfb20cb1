//! Operating `lnhubd` while LDK pays through it: the Prometheus scrape moves by exactly what
//! was forwarded (and passes `promtool check metrics`), `lnhub-cli` lists the channels and the
//! forwarding log with its fees and closes a channel cooperatively, and bad RPC requests are
//! refused with JSON errors while the hub keeps forwarding.
//!
//! Topology of `ldk_pay.rs`: S (LDK) -> hub -> R (LDK), zero-conf channels from S and R.

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::hashes::Hash;
use lightning::events::ClosureReason;
use lightning::types::payment::PaymentHash;
use lnhub_tests::{
    basic_auth, http, parse_metrics, payer_hub_payee_with, wait_until, Hub, LdkNode, LdkNodeConfig,
    TempDir,
};

const T: Duration = Duration::from_secs(20);

/// The hub's default policy (README): 1,000 msat base, 100 ppm.
fn hub_fee(amount_msat: u64) -> u64 {
    1_000 + amount_msat * 100 / 1_000_000
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// S pays R `amount` through the hub; R claims it unless `fail`, in which case R fails it
/// back. Returns the payment hash once S knows the outcome.
async fn pay(s: &LdkNode, r: &LdkNode, hub: &Hub, amount: u64, fail: bool) -> PaymentHash {
    let invoice = r.create_invoice(amount, "ops", Some(hub.node_id)).unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    r.wait_claimable(hash, T).await.expect("R has the HTLC");
    if fail {
        r.fail_htlc_backwards(&hash);
        s.wait_payment_failed(hash, T)
            .await
            .expect("S sees the failure");
    } else {
        r.claim(r.claimable_preimage(hash).expect("R's own invoice"));
        s.wait_payment_sent(hash, T).await.expect("S is paid out");
    }
    hash
}

/// Runs `promtool check metrics` on a scrape. CI installs promtool (`.ci/run`); elsewhere a
/// missing promtool skips this one check with a note.
fn promtool_check(scrape: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not run ({e}): install Debian's `prometheus` package");
            return;
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_cli_follow_ldk_payments_through_the_hub() {
    let s = LdkNode::new("S", [0x91; 32], LdkNodeConfig::default());
    let r_config = LdkNodeConfig {
        auto_claim: false,
        ..LdkNodeConfig::default()
    };
    let r = LdkNode::new("R", [0x92; 32], r_config);
    let extra = ["--metrics", "127.0.0.1:0"];
    let (hub, s_chan) = payer_hub_payee_with(&s, &r, TempDir::new("hub"), &extra).await;

    let before = parse_metrics(&hub.scrape());
    let amount = 10_000_000;
    for _ in 0..3 {
        pay(&s, &r, &hub, amount, false).await;
    }
    pay(&s, &r, &hub, amount, true).await;

    // Forwards are counted when their log entry is written, right after the incoming side
    // is resolved durably: a moment after S learns the outcome.
    let settled = "lnhub_forwards_total{outcome=\"settled\",code=\"none\"}";
    let failed = "lnhub_forwards_total{outcome=\"failed\",code=\"unknown\"}";
    let mut after = HashMap::new();
    let moved = wait_until(T, || {
        after = parse_metrics(&hub.scrape());
        get(&after, settled) - get(&before, settled) == 3.0
            && get(&after, failed) - get(&before, failed) == 1.0
            && get(&after, "lnhub_htlcs_in_flight{direction=\"incoming\"}") == 0.0
    });
    assert!(moved, "settled 3, failed 1, nothing in flight: {after:?}");
    let delta = |series: &str| get(&after, series) - get(&before, series);
    assert_eq!(
        delta("lnhub_forward_fees_msat_total"),
        3.0 * hub_fee(amount) as f64
    );
    assert_eq!(
        delta("lnhub_forward_volume_msat_total"),
        3.0 * amount as f64
    );
    assert_eq!(delta("lnhub_forward_add_seconds_count"), 4.0);
    assert_eq!(
        delta("lnhub_forward_resolve_seconds_count{outcome=\"settled\"}"),
        3.0
    );
    assert_eq!(
        delta("lnhub_forward_resolve_seconds_count{outcome=\"failed\"}"),
        1.0
    );
    assert!(
        delta("lnhub_messages_received_total{type=\"update_add_htlc\"}") >= 4.0,
        "{after:?}"
    );
    assert!(delta("lnhub_onions_peeled_total") >= 4.0);
    assert!(delta("lnhub_store_commits_total") > 0.0);
    assert_eq!(get(&after, "lnhub_channels{state=\"normal\"}"), 2.0);
    assert_eq!(get(&after, "lnhub_peers_connected"), 2.0);
    assert_eq!(
        get(&after, "lnhub_htlcs_in_flight_msat{direction=\"outgoing\"}"),
        0.0
    );
    // The hub's balances moved by what it forwarded plus its fees: it holds R's push less
    // the three payments, plus what S paid in.
    let local = get(&after, "lnhub_local_balance_msat");
    assert_eq!(
        local,
        (500_000_000 - 3 * amount + 3 * (amount + hub_fee(amount))) as f64
    );
    promtool_check(&hub.scrape());

    // The CLI sees the same: two channels, the forwards with their fees.
    let info = hub.cli(&["getinfo"]).unwrap();
    assert_eq!(info["id"], hub.node_id.to_string());
    assert_eq!(info["num_channels"], 2);
    assert_eq!(info["channels"]["normal"], 2);
    let channels = hub.cli(&["listchannels"]).unwrap();
    let channels = channels["channels"].as_array().unwrap().clone();
    assert_eq!(channels.len(), 2);
    let local_sum: u64 = channels
        .iter()
        .map(|c| c["local_balance_msat"].as_u64().unwrap())
        .sum();
    assert_eq!(local_sum as f64, local);
    let s_channel = channels
        .iter()
        .find(|c| c["peer"] == s.node_id.to_string())
        .unwrap();
    assert_eq!(s_channel["capacity_msat"], 1_000_000_000u64);
    assert_eq!(s_channel["policy"]["fee_base_msat"], 1_000);
    let forwards = hub.cli(&["listforwards"]).unwrap();
    let forwards = forwards["forwards"].as_array().unwrap().clone();
    assert_eq!(forwards.len(), 4, "{forwards:?}");
    let fees: Vec<u64> = forwards
        .iter()
        .filter(|f| f["outcome"] == "settled")
        .map(|f| f["fee_msat"].as_u64().unwrap())
        .collect();
    assert_eq!(fees, vec![hub_fee(amount); 3]);
    assert!(forwards
        .iter()
        .any(|f| f["outcome"] == "failed" && f["fee_msat"] == 0));
    let page = hub.cli(&["listforwards", "--limit", "3"]).unwrap();
    assert_eq!(page["forwards"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_offset"], 3);
    let rest = hub.cli(&["listforwards", "--offset", "3"]).unwrap();
    assert_eq!(rest["forwards"].as_array().unwrap().len(), 1);
    let by_channel = hub
        .cli(&[
            "listforwards",
            "--channel",
            s_channel["short_channel_id"].as_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(by_channel["forwards"].as_array().unwrap().len(), 4);
    let peers = hub.cli(&["listpeers"]).unwrap();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2);

    // The operator closes S's channel: S reports a cooperative closure.
    let id = s_channel["channel_id"].as_str().unwrap();
    hub.cli(&["closechannel", id]).unwrap();
    assert!(
        s.wait(T, |s| s.closures().iter().any(|(c, reason)| *c == s_chan
            && *reason
                == ClosureReason::CounterpartyInitiatedCooperativeClosure))
            .await,
        "S reports a cooperative closure started by the hub: {:?}",
        s.closures()
    );
    assert!(hub.wait_for_log("closed cooperatively", T));
    let gone = wait_until(T, || {
        let m = parse_metrics(&hub.scrape());
        get(&m, "lnhub_channels{state=\"closed\"}") == 1.0
            && get(&m, "lnhub_channels_closed_total") == 1.0
    });
    assert!(gone, "the closed channel is counted as closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rpc_requests_get_json_errors_while_the_hub_forwards() {
    let s = LdkNode::new("S", [0x93; 32], LdkNodeConfig::default());
    let r = LdkNode::new("R", [0x94; 32], LdkNodeConfig::default());
    let (hub, _) = payer_hub_payee_with(&s, &r, TempDir::new("hub"), &[]).await;
    let rpc = hub.rpc.expect("the RPC listens by default");
    let cookie = std::fs::read_to_string(hub.dir.0.join(".cookie")).unwrap();
    assert!(cookie.starts_with("__cookie__:") && cookie.len() == 11 + 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(hub.dir.0.join(".cookie"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the cookie is the owner's only");
    let good = basic_auth(&cookie);
    let getinfo = br#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
    let post = |auth: Option<&str>, body: &[u8]| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http(rpc, "POST", "/", &headers, body).unwrap()
    };
    let error_code = |body: &str| -> i64 {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error: {body}"))
    };

    // Without the cookie, or with a wrong one, nothing is answered but the refusal.
    let (status, body) = post(None, getinfo);
    assert_eq!(status, 401);
    error_code(&body);
    let wrong = basic_auth("__cookie__:00");
    assert_eq!(post(Some(&wrong), getinfo).0, 401);
    let other = http(rpc, "GET", "/", &[("Authorization", &good)], b"").unwrap();
    assert_eq!(other.0, 405);
    // With it: malformed, oversized, unknown, bad parameters.
    let (status, body) = post(Some(&good), b"{\"method\": ");
    assert_eq!((status, error_code(&body)), (200, -32700));
    let big = vec![b' '; 100 * 1024];
    let (status, body) = post(Some(&good), &big);
    assert_eq!(status, 413);
    error_code(&body);
    let (_, body) = post(Some(&good), br#"{"id":2,"method":"no_such_method"}"#);
    assert_eq!(error_code(&body), -32601);
    let (_, body) = post(
        Some(&good),
        br#"{"id":3,"method":"setchannelfee","params":{"channel":"all","ppm":"high"}}"#,
    );
    assert_eq!(error_code(&body), -32602);
    let (_, body) = post(
        Some(&good),
        br#"{"id":4,"method":"closechannel","params":{"channel":"1x2x3"}}"#,
    );
    assert_eq!(error_code(&body), -1);
    let (_, body) = post(Some(&good), br#"[1, 2, 3]"#);
    assert_eq!(error_code(&body), -32600);
    // And the hub forwarded throughout.
    let invoice = r
        .create_invoice(5_000_000, "after", Some(hub.node_id))
        .unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    s.wait_payment_sent(hash, T)
        .await
        .expect("a payment after the bad requests");
    let (status, body) = post(Some(&good), getinfo);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["num_channels"], 2);

    // The CLI's one-line errors: a wrong cookie file, and a daemon that is gone.
    let fake = hub.dir.0.join("fake-cookie");
    std::fs::write(&fake, "__cookie__:ff").unwrap();
    let out = std::process::Command::new(lnhub_tests::lnhub_cli_path())
        .args(["--data-dir"])
        .arg(&hub.dir.0)
        .arg("--cookie")
        .arg(&fake)
        .arg("getinfo")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the cookie") && err.lines().count() == 1,
        "{err}"
    );
    let stopped = hub.cli(&["stop"]).unwrap();
    assert_eq!(stopped["stopping"], true);
    let mut hub = hub;
    assert!(wait_until(T, || !hub.is_running()), "stop stops lnhubd");
    assert!(
        !hub.dir.0.join(".cookie").exists(),
        "the cookie is removed at a clean stop"
    );
    let err = hub.cli(&["getinfo"]).unwrap_err();
    assert!(err.contains("is lnhubd running"), "{err}");
}
