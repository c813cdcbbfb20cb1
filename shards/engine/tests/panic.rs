//! A panic anywhere stops the daemon's process ([`lnhub_engine::abort_on_panic`]): checked in
//! a child process (this test binary run again), since the process is meant to die.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Runs this test binary again with only `test` selected and `LNHUB_PANIC_CHILD=<how>`.
fn child(test: &str, how: &str) -> std::process::Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("LNHUB_PANIC_CHILD", how)
        .output()
        .expect("run the child")
}

/// In the child (`LNHUB_PANIC_CHILD` set; returns at once otherwise): installs the hook,
/// panics on another thread the way it says, and reports survival by exiting 0 (which the
/// parent counts as a failure).
fn run_child_if_asked() {
    let Some(how) = std::env::var_os("LNHUB_PANIC_CHILD") else {
        return;
    };
    lnhub_engine::abort_on_panic();
    match how.to_str() {
        Some("thread") => {
            let t = std::thread::Builder::new()
                .name("shard-7".into())
                .spawn(|| panic!("boom on a shard"))
                .expect("spawn");
            let _ = t.join();
        }
        Some("rayon") => {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            rayon::spawn(move || {
                let _keep = tx;
                panic!("boom on the pool");
            });
            let _ = rx.recv();
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        _ => {}
    }
    std::process::exit(0);
}

fn assert_aborted(out: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the process aborts (SIGABRT); status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(what),
        "the panic is printed first:\n{stderr}"
    );
}

#[test]
fn a_panic_on_a_shard_thread_stops_the_process() {
    run_child_if_asked();
    let out = child("a_panic_on_a_shard_thread_stops_the_process", "thread");
    assert_aborted(&out, "boom on a shard");
}

#[test]
fn a_panic_on_the_rayon_pool_stops_the_process() {
    run_child_if_asked();
    let out = child("a_panic_on_the_rayon_pool_stops_the_process", "rayon");
    assert_aborted(&out, "boom on the pool");
}
