//! The daemon as an operator meets it: first start creates the data directory and a 0600 node
//! key, prints `node_id=` and `listen=`, keeps the same identity on restart, exits 0 on
//! SIGTERM, and refuses a bad config with one line naming the field.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lnhubd-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts lnhubd, returns its two start-up lines, then stops it with SIGTERM and checks the
/// exit status.
fn start_and_stop(dir: &Path) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lnhubd"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let node_id = lines.next().unwrap().unwrap();
    let listen = lines.next().unwrap().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    for _ in 0..500 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("lnhubd did not exit within 5 s of SIGTERM")
    });
    assert!(status.success(), "SIGTERM exit status: {status}");
    (node_id, listen)
}

#[test]
fn first_start_creates_key_prints_identity_and_stops_cleanly() {
    let dir = temp_dir("start");
    let (node_id, listen) = start_and_stop(&dir);
    let hex = node_id.strip_prefix("node_id=").expect("node_id line");
    assert_eq!(hex.len(), 66);
    assert!(hex.starts_with("02") || hex.starts_with("03"));
    let addr: std::net::SocketAddr = listen.strip_prefix("listen=").unwrap().parse().unwrap();
    assert_ne!(
        addr.port(),
        0,
        "the bound port is printed, not the requested 0"
    );

    let mode = std::fs::metadata(dir.join("node_secret"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let (again, _) = start_and_stop(&dir);
    assert_eq!(again, node_id, "restart keeps the node identity");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn run_expecting_failure(dir: &Path, config: Option<&str>, args: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(text) = config {
        std::fs::write(dir.join("lnhub.toml"), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lnhubd"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn bad_config_is_one_line_naming_the_field() {
    let dir = temp_dir("bad");
    let e = run_expecting_failure(&dir, Some("listen = \"nowhere\"\n"), &[]);
    assert!(e.contains("listen"), "{e}");
    let e = run_expecting_failure(&dir, Some("network = \"moon\"\n"), &[]);
    assert!(e.contains("network"), "{e}");
    let e = run_expecting_failure(&dir, Some("lisen = \"127.0.0.1:1\"\n"), &[]);
    assert!(e.contains("lisen"), "{e}");
    let e = run_expecting_failure(&dir, Some("max_peers = 0\n"), &[]);
    assert!(e.contains("max_peers"), "{e}");
    let e = run_expecting_failure(&dir, Some("forward_log_retention_days = 99999\n"), &[]);
    assert!(e.contains("forward_log_retention_days"), "{e}");
    let e = run_expecting_failure(&dir, None, &["--connect", "nobody@127.0.0.1:9735"]);
    assert!(e.contains("connect"), "{e}");
    // What the flag parser rejects is one line and status 1 too.
    let e = run_expecting_failure(&dir, None, &["--no-such-flag"]);
    assert!(e.contains("--no-such-flag"), "{e}");
    let e = run_expecting_failure(&dir, None, &["--shards", "many"]);
    assert!(e.contains("many"), "{e}");
    // A TOML error names the line it is on.
    let e = run_expecting_failure(&dir, Some("network = \"regtest\"\nlisen = 1\n"), &[]);
    assert!(e.contains("line 2"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dialling_our_own_id_is_a_config_error() {
    let dir = temp_dir("own-id");
    let (node_id, _) = start_and_stop(&dir);
    let id = node_id.strip_prefix("node_id=").unwrap();
    let e = run_expecting_failure(&dir, None, &["--connect", &format!("{id}@127.0.0.1:1")]);
    assert!(e.contains("own id"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_dial_says_why_at_info_and_a_host_name_is_resolved_off_the_loop() {
    let dir = temp_dir("dial");
    // A port nobody listens on, and a name that does not resolve: both dials fail, and say
    // why at the default log level.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7";
    let other = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    let mut child = Command::new(env!("CARGO_BIN_EXE_lnhubd"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"])
        .args(["--connect", &format!("{id}@127.0.0.1:{port}")])
        .args(["--connect", &format!("{other}@no-such-host.invalid:9735")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut refused, mut unresolved) = (false, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(refused && unresolved) && std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if line.contains(" INFO ")
            && line.contains(&format!("dial {id}@127.0.0.1:{port} failed"))
            && line.contains("refused")
        {
            refused = true;
        }
        if line.contains(" INFO ") && line.contains("cannot resolve") && line.contains(other) {
            unresolved = true;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        refused,
        "a refused dial is logged at info, saying it was refused"
    );
    // The resolver's answer may take a while where DNS is slow; the loop never waits for it.
    assert!(unresolved, "an unresolvable host is logged at info");
}

#[test]
fn a_second_daemon_on_the_same_data_dir_refuses_to_start() {
    let dir = temp_dir("lock");
    let mut first = Command::new(env!("CARGO_BIN_EXE_lnhubd"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let node_id = lines.next().unwrap().unwrap();
    assert!(node_id.starts_with("node_id="));
    let e = run_expecting_failure(&dir, None, &["--listen", "127.0.0.1:0"]);
    assert!(e.contains("in use by another lnhubd"), "{e}");
    first.kill().unwrap();
    first.wait().unwrap();
    // The kernel released the lock with the killed process: the directory starts again, with
    // the same identity.
    let (again, _) = start_and_stop(&dir);
    assert_eq!(again, node_id);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_store_record_stops_start_up_naming_it() {
    let dir = temp_dir("corrupt");
    start_and_stop(&dir);
    {
        let (db, _) =
            lnhub_store::Db::open(&dir.join("store"), lnhub_store::Options::default()).unwrap();
        let writer = db.start_writer();
        let mut handle = writer.handle();
        let mut batch = lnhub_store::Batch::new();
        batch.put(lnhub_store::Table::Channels, &[0xab; 32], b"not a record");
        handle.commit(&mut batch).unwrap();
        drop(handle);
        writer.close();
    }
    let e = run_expecting_failure(&dir, None, &["--listen", "127.0.0.1:0"]);
    assert!(
        e.contains(&format!("record channels {} refused", "ab".repeat(32))),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Thirty daemons started at once on one fresh data directory: exactly one runs, the others
/// stop with one line saying the directory is in use, and the one running has the identity of
/// the key on disk (the lock is taken before the key is created or read).
#[test]
fn simultaneous_first_starts_leave_one_daemon_with_the_key_on_disk() {
    let dir = temp_dir("race");
    let children: Vec<_> = (0..30)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lnhubd"))
                .arg("--data-dir")
                .arg(&dir)
                .args(["--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut running = Vec::new();
    let mut refused = 0;
    for mut child in children {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        match lines.next() {
            Some(Ok(line)) => running.push((child, line)),
            _ => {
                let out = child.wait_with_output().unwrap();
                assert_eq!(out.status.code(), Some(1));
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("in use by another lnhubd"), "{err}");
                refused += 1;
            }
        }
    }
    assert_eq!((running.len(), refused), (1, 29), "one daemon runs");
    let (mut child, node_id) = running.pop().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (again, _) = start_and_stop(&dir);
    assert_eq!(again, node_id, "the running daemon had the key on disk");
    std::fs::remove_dir_all(&dir).unwrap();
}
