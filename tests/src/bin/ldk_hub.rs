//! `ldk-hub`: one LDK node (`lightning` 0.2, the tests' [`LdkNode`] harness) as a routing hub
//! in a process of its own, so its CPU time can be read from `/proc/<pid>` and set beside
//! `lnhubd`'s under the same workload (`cargo bench -p lnhub-tests --bench ldk_forward`).
//!
//! It is set up as an LDK user runs a routing node ([`ldk_hub_config`]): `ChannelMonitor`s and
//! the `ChannelManager` in `lightning-persister`'s `FilesystemStore` under `--store-dir`
//! (every write fsynced), pending forwards processed after LDK's background processor's random
//! delay, `lnhubd`'s default forwarding policy (1,000 msat + 100 ppm, CLTV delta 80, 483
//! accepted HTLCs), and zero-conf channels from the `--trusted-peer`s only.
//!
//! It prints `node_id=<hex> listen=<ip:port>` on one line once it listens, and runs until its
//! standard input closes, SIGTERM or SIGINT; then it writes the `ChannelManager` once more and
//! prints `store: <n> writes, <b> bytes (ChannelManager <n> writes <b> bytes, ChannelMonitor
//! <n> writes <b> bytes)`. LDK's log lines go to stderr.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::hex::FromHex;
use bitcoin::secp256k1::PublicKey;
use lightning::util::logger::Level;
use lightning::util::persist::{
    KVStoreSync, CHANNEL_MANAGER_PERSISTENCE_KEY, CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::Writeable;
use lnhub_tests::ldk_hub::ldk_hub_config;
use lnhub_tests::ldk_node::StoreStats;
use lnhub_tests::{ForwardDelay, LdkNode};

const USAGE: &str = "\
usage: ldk-hub --store-dir DIR [--trusted-peer NODE_ID]... [--listen IP:PORT]
               [--seed HEX32] [--forward-delay bp|MS] [--log-level LEVEL]

  --store-dir DIR        FilesystemStore directory (ChannelMonitors and the ChannelManager)
  --trusted-peer ID      accept zero-conf channels from this node (repeatable); other
                         peers' channels wait for confirmations
  --listen IP:PORT       where to listen [default: 127.0.0.1:0]
  --seed HEX32           the KeysManager seed, 64 hex digits [default: 83 repeated]
  --forward-delay bp|MS  when pending forwards are processed: `bp` as LDK's background
                         processor (random, median 50 ms), or every MS ms (0: at once)
                         [default: bp]
  --log-level LEVEL      error|warn|info|debug|trace: LDK's lines on stderr [default: warn]

Prints `node_id=<hex> listen=<ip:port>`, runs until stdin closes, SIGTERM or SIGINT, then
prints `store: ...` (what it wrote).";

struct Args {
    store_dir: PathBuf,
    trusted: Vec<PublicKey>,
    listen: String,
    seed: [u8; 32],
    forward_delay: ForwardDelay,
    log_level: Level,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut store_dir = None;
    let mut args = Args {
        store_dir: PathBuf::new(),
        trusted: Vec::new(),
        listen: "127.0.0.1:0".to_string(),
        seed: [0x83; 32],
        forward_delay: ForwardDelay::BackgroundProcessor,
        log_level: Level::Warn,
    };
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        const FLAGS: [&str; 6] = [
            "--store-dir",
            "--trusted-peer",
            "--listen",
            "--seed",
            "--forward-delay",
            "--log-level",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--store-dir" => store_dir = Some(PathBuf::from(value)),
            "--trusted-peer" => args.trusted.push(
                value
                    .parse()
                    .map_err(|e| format!("--trusted-peer {value}: {e}"))?,
            ),
            "--listen" => args.listen = value,
            "--seed" => {
                args.seed = <[u8; 32]>::from_hex(&value)
                    .map_err(|e| format!("--seed: 64 hex digits expected: {e}"))?
            }
            "--forward-delay" => {
                args.forward_delay = match value.as_str() {
                    "bp" => ForwardDelay::BackgroundProcessor,
                    "0" => ForwardDelay::Immediate,
                    ms => ForwardDelay::Fixed(Duration::from_millis(
                        ms.parse()
                            .map_err(|_| format!("--forward-delay {ms}: `bp` or milliseconds"))?,
                    )),
                }
            }
            "--log-level" => {
                args.log_level = match value.as_str() {
                    "error" => Level::Error,
                    "warn" => Level::Warn,
                    "info" => Level::Info,
                    "debug" => Level::Debug,
                    "trace" => Level::Trace,
                    other => return Err(format!("--log-level {other}: unknown level")),
                }
            }
            _ => unreachable!("checked above"),
        }
    }
    args.store_dir = store_dir.ok_or("--store-dir is required")?;
    Ok(args)
}

/// Runs the hub until it is told to stop; returns what its store wrote.
async fn run(args: Args) -> Result<StoreStats, String> {
    let config = ldk_hub_config(
        args.store_dir,
        args.trusted,
        args.forward_delay,
        args.log_level,
    );
    let mut node = LdkNode::new("ldk-hub", args.seed, config);
    let addr = node.listen_on(&args.listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "node_id={} listen={addr}", node.node_id)
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }

    // Standard input closing (the parent gone, or done) stops the hub.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = closed_rx => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }

    // As LDK's background processor does when it stops: the ChannelManager once more.
    node.store
        .write(
            CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
            CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
            CHANNEL_MANAGER_PERSISTENCE_KEY,
            node.channel_manager.encode(),
        )
        .map_err(|e| format!("persisting the ChannelManager: {e}"))?;
    Ok(node.store.stats())
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ldk-hub: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(st) => println!(
            "store: {} writes, {} bytes (ChannelManager {} writes {} bytes, ChannelMonitor {} \
             writes {} bytes)",
            st.manager_writes + st.monitor_writes,
            st.manager_bytes + st.monitor_bytes,
            st.manager_writes,
            st.manager_bytes,
            st.monitor_writes,
            st.monitor_bytes
        ),
        Err(e) => {
            eprintln!("ldk-hub: {e}");
            std::process::exit(1);
        }
    }
}
