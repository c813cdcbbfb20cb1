//! The node's long-term secret: created once, kept in the data directory with mode 0600.
//!
//! The file `node_secret` holds the 32 raw bytes of the secp256k1 secret key behind our node id
//! (the BOLT 8 static key). It is written to a temporary file, fsynced and renamed, so a crash
//! never leaves a half-written key. Its bytes never reach a log: [`NodeKey`]'s `Debug` prints
//! only the public node id.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use secp256k1::{PublicKey, Secp256k1, SecretKey};

/// File name of the node secret inside the data directory.
pub const NODE_SECRET_FILE: &str = "node_secret";

/// The node's static key pair.
pub struct NodeKey {
    /// Secret half: BOLT 8 static key.
    pub secret: SecretKey,
    /// Our node id.
    pub node_id: PublicKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.node_id)
    }
}

/// File name of the data directory's lock inside it.
pub const LOCK_FILE: &str = "lock";

/// Creates `dir` (mode 0700) if needed and takes its lock (`lock`, an exclusive `flock` held
/// until the returned file is dropped, i.e. for the process's life): a second `lnhubd` on the
/// same directory stops here, before it reads or creates the node key or opens the store, so
/// two daemons never share one identity or one channel database. The kernel releases the lock
/// when the process dies, `kill -9` included.
pub fn lock_data_dir(dir: &Path) -> Result<fs::File, String> {
    if !dir.exists() {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(format!(
                "data dir {} is in use by another lnhubd (it holds {})",
                dir.display(),
                path.display()
            ))
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()))
        }
    }
    // The holder's pid, for the operator (the lock itself is the flock, not this content).
    let _ = file
        .set_len(0)
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Loads the node key from `dir`, creating it on first start (`dir` exists: see
/// [`lock_data_dir`]). A `node_secret` that exists in any form (a dangling symlink included)
/// is read, never replaced: a new key would be a new identity, with every channel's peer
/// refusing us. The read is bounded.
pub fn load_or_create(dir: &Path) -> Result<NodeKey, String> {
    let path = dir.join(NODE_SECRET_FILE);
    let secret = match fs::symlink_metadata(&path) {
        Ok(_) => read_secret(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = fresh_secret()?;
            write_secret(&path, &secret)?;
            secret
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let node_id = PublicKey::from_secret_key(&Secp256k1::signing_only(), &secret);
    Ok(NodeKey { secret, node_id })
}

fn read_secret(path: &Path) -> Result<SecretKey, String> {
    let file = fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} is a symbolic link to a missing file; restore the key it pointed to \
                 (a new key would be a new node identity)",
                path.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {mode:o}); run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    // One byte more than a key: enough to tell a longer file, never more.
    let mut bytes = Vec::with_capacity(33);
    file.take(33)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    SecretKey::from_slice(&bytes)
        .map_err(|_| format!("{} does not hold a 32-byte secret key", path.display()))
}

/// A secret key from the operating system's randomness.
pub fn fresh_secret() -> Result<SecretKey, String> {
    let mut bytes = [0u8; 32];
    loop {
        getrandom::getrandom(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
        // Out of range has probability ~2^-128; draw again rather than fail.
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
}

fn write_secret(path: &Path, secret: &SecretKey) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(&secret.secret_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_0600_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("lnhub-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let _lock = lock_data_dir(&dir).unwrap();
        assert!(lock_data_dir(&dir)
            .unwrap_err()
            .contains("in use by another lnhubd"));
        let a = load_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join(NODE_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.node_id, b.node_id);
        assert_eq!(format!("{a:?}"), format!("NodeKey({})", a.node_id));
        fs::set_permissions(
            dir.join(NODE_SECRET_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .contains("readable by others"));
        // A dangling symlink stops start-up instead of minting a new identity.
        fs::remove_file(dir.join(NODE_SECRET_FILE)).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join(NODE_SECRET_FILE)).unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .contains("symbolic link to a missing file"));
        // A longer file is refused after a bounded read.
        fs::remove_file(dir.join(NODE_SECRET_FILE)).unwrap();
        fs::write(dir.join(NODE_SECRET_FILE), vec![1u8; 4096]).unwrap();
        fs::set_permissions(
            dir.join(NODE_SECRET_FILE),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .contains("does not hold a 32-byte secret key"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
