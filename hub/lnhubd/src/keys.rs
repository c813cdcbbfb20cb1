//! The node's long-term secret: created once, kept in the data directory with mode 0600.
//!
//! The file `node_secret` holds the 32 raw bytes of the secp256k1 secret key behind our node id
//! (the BOLT 8 static key). It is written to a temporary file, fsynced and renamed, so a crash
//! never leaves a half-written key. Its bytes never reach a log: [`NodeKey`]'s `Debug` prints
//! only the public node id.

use std::fs;
use std::io::Write;
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

/// Loads the node key from `dir`, creating it (and `dir`, mode 0700) on first start.
pub fn load_or_create(dir: &Path) -> Result<NodeKey, String> {
    if !dir.exists() {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let path = dir.join(NODE_SECRET_FILE);
    let secret = match fs::read(&path) {
        Ok(bytes) => {
            let mode = fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} is readable by others (mode {mode:o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                ));
            }
            SecretKey::from_slice(&bytes)
                .map_err(|_| format!("{} does not hold a 32-byte secret key", path.display()))?
        }
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
