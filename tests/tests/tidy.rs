//! House rules checked as a test (TigerBeetle's "tidy"): pure crates stay sans-IO, every crate
//! root carries module docs, no file grows past the split-by-concern size, and non-test code
//! has no `todo!`/`unimplemented!` stubs.
//!
//! A pure crate (DESIGN.md "Layout") may not touch sockets, threads, files, the clock or OS
//! randomness: time and randomness come in as arguments. The rayon pool is the one allowed
//! parallelism: batch functions of pure crates run on it by design.

use std::fs;
use std::path::{Path, PathBuf};

/// Crates allowed to do I/O (the shells), relative to the workspace root. Every other
/// workspace member is pure: a new crate is sans-IO unless it is declared a shell here.
const SHELL_CRATES: &[&str] = &[
    "hub/lnhubd",
    "shards/engine",
    "persistence/store",
    "benches/loadgen",
    "ops/cli",
    "tests",
];

/// The workspace members, read from the root `Cargo.toml`.
fn members() -> Vec<String> {
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("workspace members") + "members = [".len();
    let end = start + manifest[start..].find(']').expect("end of members");
    manifest[start..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn pure_crates() -> Vec<String> {
    members()
        .into_iter()
        .filter(|m| !SHELL_CRATES.contains(&m.as_str()))
        .collect()
}

/// What a pure crate's non-test code must not mention, with the reason shown on failure.
const FORBIDDEN_IN_PURE: &[(&str, &str)] = &[
    ("std::net", "sockets belong in a shell"),
    ("std::fs", "files belong in a shell"),
    (
        "std::thread",
        "threads belong in a shell (rayon batches excepted)",
    ),
    ("std::process", "processes belong in a shell"),
    ("std::env", "the environment is read by the shell's config"),
    ("Instant::now", "time comes in as an argument"),
    ("SystemTime::now", "time comes in as an argument"),
    ("thread_rng", "randomness comes in as an argument"),
    ("OsRng", "randomness comes in as an argument"),
    ("getrandom", "randomness comes in as an argument"),
    ("tokio", "no runtime in a pure crate"),
    ("mio::", "no event loop in a pure crate"),
];

/// Files past this many lines should be split by concern (STYLE.md rule 15), or say in their
/// module docs why they are not (a `//!` line starting with [`LONG_BECAUSE`]).
const LONG_FILE_LINES: usize = 1_000;

/// How a long file's module docs say why it is long.
const LONG_BECAUSE: &str = "//! Long because";

/// No file grows past this many lines, whatever the reason.
const MAX_FILE_LINES: usize = 2_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != "fuzz" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a source file that is not a `#[cfg(test)]` module at its end (by convention
/// test modules close the file).
fn non_test_part(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Test-only sources: a `tests.rs` module file or anything under a `tests` folder.
fn is_test_file(path: &Path) -> bool {
    let rel = path.strip_prefix(root()).unwrap_or(path);
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

#[test]
fn pure_crates_do_no_io() {
    let mut violations = Vec::new();
    let pure = pure_crates();
    assert!(
        pure.len() >= 5,
        "expected the pure crates in the workspace: {pure:?}"
    );
    for krate in &pure {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let text = fs::read_to_string(file).unwrap();
            for (lineno, line) in non_test_part(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for (pattern, why) in FORBIDDEN_IN_PURE {
                    if code.contains(pattern) {
                        violations.push(format!(
                            "{}:{}: `{pattern}`: {why}",
                            file.display(),
                            lineno + 1
                        ));
                    }
                }
            }
        }
        let manifest = fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dev-dependencies]").next().unwrap_or("");
        for dep in ["mio", "tokio", "getrandom", "rand ", "heed", "crossbeam"] {
            if deps.lines().any(|l| l.trim_start().starts_with(dep)) {
                violations.push(format!("{krate}/Cargo.toml depends on `{}`", dep.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure crates must stay sans-IO:\n{}",
        violations.join("\n")
    );
}

#[test]
fn crate_roots_have_module_docs_and_files_stay_small() {
    let mut problems = Vec::new();
    for krate in &members() {
        let src = root().join(krate).join("src");
        for root_file in ["lib.rs", "main.rs"] {
            let path = src.join(root_file);
            if let Ok(text) = fs::read_to_string(&path) {
                if !text.trim_start().starts_with("//!") {
                    problems.push(format!("{} does not open with `//!` docs", path.display()));
                }
            }
        }
        let mut files = Vec::new();
        rust_files(&root().join(krate), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            let lines = text.lines().count();
            let says_why = text
                .lines()
                .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
                .any(|l| l.starts_with(LONG_BECAUSE));
            if lines > MAX_FILE_LINES || (lines > LONG_FILE_LINES && !says_why) {
                problems.push(format!(
                    "{} has {lines} lines; split it by concern{}",
                    file.display(),
                    if lines > MAX_FILE_LINES {
                        String::new()
                    } else {
                        format!(" or say why not in a `{LONG_BECAUSE}` module doc line")
                    }
                ));
            }
            for (lineno, line) in non_test_part(&text).lines().enumerate() {
                // Spelled in two halves so this file does not match itself.
                if line.contains(concat!("todo", "!("))
                    || line.contains(concat!("unimplemented", "!("))
                {
                    problems.push(format!(
                        "{}:{}: stub left in code",
                        file.display(),
                        lineno + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "house rules:\n{}", problems.join("\n"));
}
