//! Where an [`LdkNode`](crate::LdkNode) persists: [`NodeStore`], in memory ([`MemStore`], the
//! tests' default) or in `lightning-persister`'s `FilesystemStore` (what an LDK user runs; the
//! `ldk-hub` binary), counting what LDK asks it to write ([`StoreStats`]) so the `ldk_forward`
//! bench can report bytes written per forward beside `lnhubd`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lightning::util::persist::{KVStoreSync, CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE};
use lightning_persister::fs_store::FilesystemStore;

/// An in-memory `KVStoreSync` (ChannelMonitors persist here).
#[derive(Default)]
pub struct MemStore(Mutex<HashMap<(String, String, String), Vec<u8>>>);

impl KVStoreSync for MemStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> lightning::io::Result<Vec<u8>> {
        let k = (primary.to_string(), secondary.to_string(), key.to_string());
        self.0.lock().unwrap().get(&k).cloned().ok_or_else(|| {
            lightning::io::Error::new(lightning::io::ErrorKind::NotFound, "no such key")
        })
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> lightning::io::Result<()> {
        let k = (primary.to_string(), secondary.to_string(), key.to_string());
        self.0.lock().unwrap().insert(k, buf);
        Ok(())
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        _lazy: bool,
    ) -> lightning::io::Result<()> {
        let k = (primary.to_string(), secondary.to_string(), key.to_string());
        self.0.lock().unwrap().remove(&k);
        Ok(())
    }

    fn list(&self, primary: &str, secondary: &str) -> lightning::io::Result<Vec<String>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|(p, s, _)| p == primary && s == secondary)
            .map(|(_, _, k)| k.clone())
            .collect())
    }
}

/// Where an [`LdkNode`](crate::LdkNode) persists its `ChannelMonitor`s (through the
/// `ChainMonitor`, LDK's `Persist` for every `KVStoreSync`: the whole monitor on each update)
/// and, with a filesystem store, its `ChannelManager` (written by the node's background task
/// whenever `get_and_clear_needs_persistence` says so, as LDK's background processor does).
///
/// `Fs` is `lightning-persister`'s `FilesystemStore`, what an LDK user runs: each write goes to
/// a temporary file, is fsynced, renamed over the key's file, and the directory fsynced. Both
/// count what they are given ([`StoreStats`]).
pub enum NodeStore {
    /// In memory (the tests' default).
    Mem(MemStore, StoreCounters),
    /// On disk, in the directory of [`LdkNodeConfig::store_dir`](crate::LdkNodeConfig::store_dir).
    Fs(FilesystemStore, StoreCounters),
}

/// Counters behind [`StoreStats`].
#[derive(Default)]
pub struct StoreCounters {
    manager_writes: AtomicU64,
    manager_bytes: AtomicU64,
    monitor_writes: AtomicU64,
    monitor_bytes: AtomicU64,
}

/// What a [`NodeStore`] was asked to write so far (bytes are the values LDK handed over; a
/// filesystem store also writes and fsyncs a directory entry per write).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `ChannelManager` writes.
    pub manager_writes: u64,
    /// Their bytes.
    pub manager_bytes: u64,
    /// `ChannelMonitor` writes (one per monitor update).
    pub monitor_writes: u64,
    /// Their bytes.
    pub monitor_bytes: u64,
}

impl NodeStore {
    fn parts(&self) -> (&dyn KVStoreSync, &StoreCounters) {
        match self {
            NodeStore::Mem(m, c) => (m, c),
            NodeStore::Fs(f, c) => (f, c),
        }
    }

    /// What was written so far.
    pub fn stats(&self) -> StoreStats {
        let c = self.parts().1;
        StoreStats {
            manager_writes: c.manager_writes.load(Ordering::Relaxed),
            manager_bytes: c.manager_bytes.load(Ordering::Relaxed),
            monitor_writes: c.monitor_writes.load(Ordering::Relaxed),
            monitor_bytes: c.monitor_bytes.load(Ordering::Relaxed),
        }
    }
}

impl KVStoreSync for NodeStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> lightning::io::Result<Vec<u8>> {
        self.parts().0.read(primary, secondary, key)
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> lightning::io::Result<()> {
        let (store, c) = self.parts();
        let (writes, bytes) = if primary == CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE {
            (&c.monitor_writes, &c.monitor_bytes)
        } else {
            (&c.manager_writes, &c.manager_bytes)
        };
        writes.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        store.write(primary, secondary, key, buf)
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> lightning::io::Result<()> {
        self.parts().0.remove(primary, secondary, key, lazy)
    }

    fn list(&self, primary: &str, secondary: &str) -> lightning::io::Result<Vec<String>> {
        self.parts().0.list(primary, secondary)
    }
}
