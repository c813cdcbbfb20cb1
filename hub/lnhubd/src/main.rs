//! `lnhubd`: the lnhub daemon.
//!
//! Start-up order: flags -> config file -> validated [`config::Config`]; the data directory
//! and node key are created on first start; the listener is bound; then two lines go to
//! standard output for scripts and the load generator to read, and the event loop runs:
//!
//! ```text
//! node_id=<66 hex characters>
//! listen=<ip:port actually bound>
//! metrics=<ip:port>   (with --metrics)
//! rpc=<ip:port>       (unless --rpc-listen off)
//! ```
//!
//! Logs go to standard error. Exit status: 0 after SIGINT/SIGTERM, 1 on a configuration or
//! start-up error (one line saying which field or file is wrong).

mod admin;
mod chain;
mod config;
mod engine;
mod keys;
mod net;
mod wallet;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use lnhub_peer::PeerConfig;

fn main() -> ExitCode {
    let process_start = std::time::Instant::now();
    // A panic on any thread stops the process: a restart recovers from the store, while a
    // half-alive hub would drop a dead shard's messages silently.
    lnhub_engine::abort_on_panic();
    let flags = match config::Flags::try_parse() {
        Ok(flags) => flags,
        Err(e) if !e.use_stderr() => {
            // --help and --version: what was asked for, on standard output.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lnhubd: {}", config::flag_error_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let config = match config::Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lnhubd: {e}");
            return ExitCode::FAILURE;
        }
    };
    env_logger::Builder::new()
        .parse_filters(&config.log_level)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    // Named, so a per-thread CPU profile tells the signature and peel pool from the rest.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("rayon-{i}"))
        .build_global()
    {
        log::warn!("rayon pool: {e}");
    }
    match run(config, process_start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lnhubd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::Config, process_start: std::time::Instant) -> Result<(), String> {
    // The lock comes first: a second daemon on this directory stops here, before it reads or
    // creates the node key or opens the store.
    let _lock = keys::lock_data_dir(&config.data_dir)?;
    let key = keys::load_or_create(&config.data_dir)?;
    let peer_config = PeerConfig {
        features: lnhub_peer::lnhub_features(),
        chain_hash: config.chain_hash,
        ping_interval: config.ping_interval,
        pong_timeout: config.pong_timeout,
    };
    let node_id = key.node_id;
    if let Some(own) = config.connect.iter().find(|p| p.node_id == node_id) {
        return Err(format!(
            "invalid config: connect: {}@{} is this node's own id",
            own.node_id, own.addr
        ));
    }
    let data_dir = config.data_dir.clone();
    let summary = format!(
        "network {}, data dir {}, {} peer(s) to dial, {} trusted peer(s)",
        config.network,
        data_dir.display(),
        config.connect.len(),
        config.trusted_peers.len()
    );
    let store_dir = data_dir.join(STORE_DIR);
    let started = std::time::Instant::now();
    let store_options = lnhub_store::Options {
        forward_retention_secs: config.forward_log_retention.map(|d| d.as_secs()),
        ..lnhub_store::Options::default()
    };
    let (db, loaded) = lnhub_store::Db::open(&store_dir, store_options)
        .map_err(|e| format!("{e} (in {})", store_dir.display()))?;
    log::info!(
        "store {} loaded in {} ms: {} channel(s), {} in establishment, {} forward(s) in flight, \
         {} onion(s) in the replay set; {} journal entries applied; journal written {}",
        store_dir.display(),
        started.elapsed().as_millis(),
        loaded.channels.len(),
        loaded.openings.len(),
        loaded.links.len(),
        loaded.replays.len(),
        db.journal_entries_recovered(),
        if db.journal_is_direct() {
            "with direct synchronous I/O"
        } else {
            "with pwrite and fdatasync (the file system refuses direct I/O)"
        }
    );
    // The chain backend answers before anything starts: shards begin at its height.
    // `--bitcoind auto`: our own regtest node, stopped when this function returns.
    let own_node = match config.bitcoind_auto {
        true => Some(chain::OwnNode::start(&data_dir)?),
        false => None,
    };
    let backend = own_node
        .as_ref()
        .map(|n| (n.config.clone(), " (run by lnhubd)"))
        .or_else(|| config.bitcoind.clone().map(|b| (b, "")));
    let chain = match backend {
        Some((b, own)) => {
            let (node, tracker) = chain::connect(b.clone(), &config.network)?;
            log::info!(
                "chain backend: bitcoind at {}{own}, height {}",
                b.url,
                tracker.height().unwrap_or(0)
            );
            Some((node, tracker, format!("bitcoind {}{own}", b.url)))
        }
        None => {
            log::info!(
                "no chain backend (--bitcoind-rpc): block height stays 0, only zero-conf \
                 channels from trusted peers become usable"
            );
            None
        }
    };
    // Peers we hold channels with always get a connection slot (see net.rs).
    let channel_peers = loaded
        .channels
        .iter()
        .map(|(id, _)| id)
        .chain(loaded.openings.iter().map(|(id, _)| id))
        .filter_map(|id| loaded.peer_of(id))
        .collect();
    let writer = db.start_writer();
    // The on-chain wallet needs the chain: it is fed the blocks the chain thread reads.
    let mut close_script = None;
    let wallet = match &chain {
        Some(_) => {
            let mut w = wallet::HubWallet::open(
                &key.secret,
                &config.network,
                &loaded.wallet,
                writer.handle(),
            )?;
            close_script = Some(w.close_script()?);
            let (tx, rx) = crossbeam_channel::bounded(16);
            Some((w, rx, tx))
        }
        None => None,
    };
    let engine_config = config.clone();
    let (network, metrics_listen, rpc_listen) = (
        config.network.clone(),
        config.metrics_listen,
        config.rpc_listen,
    );
    let node_secret = key.secret;
    // The shards' requests for the chain backend, if there is one.
    let (chain_tx, chain_rx) = match chain {
        Some(_) => {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let mut node = net::Node::bind(config, key, peer_config, channel_peers, |waker| {
        engine::start(
            &engine_config,
            node_secret,
            &writer,
            &loaded,
            waker,
            chain_tx,
            close_script,
        )
        .map(Some)
    })?;
    drop(loaded);
    let bound = node.local_addr().map_err(|e| e.to_string())?;
    let mut lines = vec![format!("node_id={node_id}"), format!("listen={bound}")];
    if let Some(engine) = node.engine_admin() {
        let chain_stats = std::sync::Arc::new(chain::ChainStats::default());
        let mut wallet_commands = None;
        let backend = match chain {
            Some((bitcoind, tracker, name)) => {
                chain::tell_shards(&engine, tracker.height().unwrap_or(0));
                let requests = chain_rx.expect("made with the backend");
                let (w, commands, sender) = wallet.expect("made with the backend");
                wallet_commands = Some(sender);
                chain::follow(
                    bitcoind,
                    tracker,
                    engine.clone(),
                    chain_stats.clone(),
                    requests,
                    Some((w, commands)),
                )?;
                name
            }
            None => "none".to_string(),
        };
        let ctx = admin::Context {
            chain_backend: backend,
            wallet: wallet_commands,
            chain: chain_stats,
            node_id,
            network,
            listen: bound,
            net: node.handle(),
            engine,
            store: writer.monitor(),
            startup: process_start.elapsed(),
            min_cltv_expiry_delta: config::MIN_CLTV_EXPIRY_DELTA,
        };
        if let Some(addr) = metrics_listen {
            let at = admin::serve_metrics(addr, ctx.clone())?;
            lines.push(format!("metrics={at}"));
        }
        if let Some(addr) = rpc_listen {
            let at = admin::serve_rpc(addr, &data_dir, ctx)?;
            lines.push(format!("rpc={at}"));
        }
    }
    {
        // A reader that stopped reading (a script that took the first lines and closed the
        // pipe) does not stop the daemon: the lines are also in the log.
        let mut out = std::io::stdout().lock();
        let written = lines
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"))
            .and_then(|_| out.flush());
        if let Err(e) = written {
            log::warn!("start-up lines not all written to stdout: {e}");
        }
        log::info!("{}", lines.join(" "));
    }
    log::info!(
        "lnhubd {} started: node {node_id}, {summary}",
        env!("CARGO_PKG_VERSION")
    );
    let result = node.run().map_err(|e| format!("event loop: {e}"));
    admin::remove_rpc_files(&data_dir);
    drop(own_node);
    // What the journal holds goes into the tables now, so the next start applies nothing.
    writer.checkpoint();
    let st = writer.stats();
    log::info!(
        "store: {} commits ({} shard batches, at most {} in one), {} records, {} bytes, \
         {} us per commit, {} checkpoints ({} us each), {} forwarding-log entries pruned",
        st.commits,
        st.submissions,
        st.largest_group,
        st.records,
        st.bytes,
        st.commit_nanos / st.commits.max(1) / 1000,
        st.checkpoints,
        st.checkpoint_nanos / st.checkpoints.max(1) / 1000,
        st.forwards_pruned
    );
    result
}

/// The LMDB environment's directory inside the data directory.
const STORE_DIR: &str = "store";
