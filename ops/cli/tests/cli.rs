//! `lnhub-cli` without a daemon: every command has its `--help`, bad arguments and a data
//! directory with no daemon are one line on standard error and exit status 1. (With a daemon:
//! `tests/tests/ops.rs`, which also relies on this test target to have the binary built.)

use std::process::Command;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lnhub-cli"))
        .args(args)
        .output()
        .expect("run lnhub-cli")
}

#[test]
fn every_command_has_help() {
    let out = cli(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "getinfo",
        "connect",
        "disconnect",
        "listpeers",
        "listchannels",
        "setchannelfee",
        "closechannel",
        "listforwards",
        "stop",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
        let out = cli(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[test]
fn no_daemon_and_bad_arguments_are_one_line_and_status_1() {
    let dir = std::env::temp_dir().join(format!("lnhub-cli-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = cli(&["--data-dir", dir.to_str().unwrap(), "getinfo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is lnhubd running"), "{err}");
    // An address with nothing behind it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    std::fs::write(dir.join("rpc_address"), &addr).unwrap();
    std::fs::write(dir.join(".cookie"), "__cookie__:00").unwrap();
    let out = cli(&["--data-dir", dir.to_str().unwrap(), "listpeers"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach lnhubd") && err.contains(&addr),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = cli(&["setchannelfee"]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}
