//! Per-commitment secrets (BOLT 3, "Per-commitment Secret Requirements" and
//! "Efficient Per-commitment Secret Storage").
//!
//! [`generate_from_seed`] produces the secret of index `I` from a 32-byte
//! seed; the first secret used is index 2^48 - 1 and indices count down.
//! [`SecretStore`] is the receiver's compact store (at most 49 secrets),
//! which checks every new secret against the ones already held and refuses
//! one that was not generated from the same seed. The seed itself comes from
//! the caller (the crate has no randomness).

use bitcoin::hashes::{sha256, Hash};

/// The largest per-commitment index: secrets are 48-bit indexed and the
/// first one used is `2^48 - 1`.
pub const MAX_INDEX: u64 = (1 << 48) - 1;

/// Number of buckets in the compact store: one per possible count of
/// trailing zero bits of a 48-bit index (0..=47) plus one for index 0.
const BUCKETS: usize = 49;

/// Flips bit `b` (the `b mod 8` bit of byte `b div 8`) and hashes.
fn flip_and_hash(p: &mut [u8; 32], b: u32) {
    p[(b / 8) as usize] ^= 1 << (b % 8);
    *p = sha256::Hash::hash(p).to_byte_array();
}

/// `derive_secret(base, bits, I)` of the spec: the secret of index `index`
/// from a base secret whose index shares bits `bits..48` with it.
fn derive_secret(base: &[u8; 32], bits: u32, index: u64) -> [u8; 32] {
    let mut p = *base;
    for b in (0..bits).rev() {
        if index & (1 << b) != 0 {
            flip_and_hash(&mut p, b);
        }
    }
    p
}

/// The bucket of `index` in the compact store: its count of trailing zero
/// bits, or 48 for index 0.
fn bucket_of(index: u64) -> usize {
    if index == 0 {
        48
    } else {
        index.trailing_zeros() as usize
    }
}

/// `generate_from_seed(seed, I)`: the per-commitment secret of index `index`
/// (only the low 48 bits of `index` are used).
pub fn generate_from_seed(seed: &[u8; 32], index: u64) -> [u8; 32] {
    derive_secret(seed, 48, index & MAX_INDEX)
}

/// Why a secret was refused by [`SecretStore::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShachainError {
    /// The index does not fit in 48 bits.
    IndexTooLarge(u64),
    /// Secrets must arrive in strictly descending order, one index at a
    /// time, starting at 2^48 - 1; this is the index that was expected.
    UnexpectedIndex {
        /// The index the store expected next.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// The secret does not derive an earlier secret held in the store: the
    /// peer's secrets do not come from one seed. The channel must fail.
    Inconsistent {
        /// The index of the held secret that the new one failed to derive.
        earlier_index: u64,
    },
    /// An entry given to [`SecretStore::from_entries`] cannot be part of a
    /// store that received secrets down to its `next_index`: not received
    /// yet, its bucket already taken, or the latest received secret
    /// missing.
    BadEntry {
        /// The offending index (for a missing latest secret, that index).
        index: u64,
    },
}

impl core::fmt::Display for ShachainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShachainError::IndexTooLarge(i) => {
                write!(f, "per-commitment index {i} exceeds 48 bits")
            }
            ShachainError::UnexpectedIndex { expected, got } => {
                write!(
                    f,
                    "per-commitment index {got} received, {expected} expected"
                )
            }
            ShachainError::Inconsistent { earlier_index } => {
                write!(
                    f,
                    "secret does not derive the held secret of index {earlier_index}"
                )
            }
            ShachainError::BadEntry { index } => {
                write!(f, "stored secret of index {index} does not fit the store")
            }
        }
    }
}

impl std::error::Error for ShachainError {}

/// The compact store of the peer's revealed per-commitment secrets: at most
/// 49 `(index, secret)` pairs, from which every secret received so far can
/// be re-derived. Fixed size; never allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretStore {
    known: [Option<(u64, [u8; 32])>; BUCKETS],
    /// The next index expected (`None` once index 0 has been received).
    next_index: Option<u64>,
}

impl Default for SecretStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretStore {
    /// An empty store, expecting index 2^48 - 1 first.
    pub fn new() -> Self {
        SecretStore {
            known: [None; BUCKETS],
            next_index: Some(MAX_INDEX),
        }
    }

    /// The index the next [`insert`](Self::insert) must carry, or `None` if
    /// all 2^48 secrets have been received.
    pub fn next_index(&self) -> Option<u64> {
        self.next_index
    }

    /// `insert_secret(secret, I)`: stores the secret of `index` after
    /// checking that it derives every secret already held.
    pub fn insert(&mut self, index: u64, secret: [u8; 32]) -> Result<(), ShachainError> {
        if index > MAX_INDEX {
            return Err(ShachainError::IndexTooLarge(index));
        }
        if self.next_index != Some(index) {
            return Err(ShachainError::UnexpectedIndex {
                expected: self.next_index.unwrap_or(0),
                got: index,
            });
        }
        let bucket = bucket_of(index);
        for (earlier_index, earlier_secret) in self.known[..bucket].iter().flatten() {
            if derive_secret(&secret, bucket as u32, *earlier_index) != *earlier_secret {
                return Err(ShachainError::Inconsistent {
                    earlier_index: *earlier_index,
                });
            }
        }
        self.known[bucket] = Some((index, secret));
        self.next_index = index.checked_sub(1);
        Ok(())
    }

    /// The held `(index, secret)` pairs, in bucket order (at most 49): with
    /// [`next_index`](Self::next_index), everything needed to rebuild the
    /// store exactly with [`from_entries`](Self::from_entries).
    pub fn entries(&self) -> impl Iterator<Item = (u64, [u8; 32])> + '_ {
        self.known.iter().flatten().copied()
    }

    /// Rebuilds a store from [`entries`](Self::entries) and
    /// [`next_index`](Self::next_index), as read back from storage. Every
    /// check of [`insert`](Self::insert) is made again, plus the shape of
    /// the store: each entry has been received (index above `next_index`),
    /// sits alone in its bucket, and the latest received secret is held.
    /// So bytes that were corrupted on disk are refused, not trusted.
    pub fn from_entries(
        next_index: Option<u64>,
        entries: impl IntoIterator<Item = (u64, [u8; 32])>,
    ) -> Result<Self, ShachainError> {
        if let Some(n) = next_index {
            if n > MAX_INDEX {
                return Err(ShachainError::IndexTooLarge(n));
            }
        }
        let mut store = SecretStore {
            known: [None; BUCKETS],
            next_index,
        };
        for (index, secret) in entries {
            if index > MAX_INDEX {
                return Err(ShachainError::IndexTooLarge(index));
            }
            if next_index.is_some_and(|n| index <= n) {
                return Err(ShachainError::BadEntry { index });
            }
            let bucket = bucket_of(index);
            if store.known[bucket].is_some() {
                return Err(ShachainError::BadEntry { index });
            }
            store.known[bucket] = Some((index, secret));
        }
        // The latest received secret is always held (it was inserted last
        // and only a later secret could have replaced it).
        let latest = match next_index {
            Some(MAX_INDEX) => None,
            Some(n) => Some(n + 1),
            None => Some(0),
        };
        if let Some(latest) = latest {
            if store.known[bucket_of(latest)].map(|e| e.0) != Some(latest) {
                return Err(ShachainError::BadEntry { index: latest });
            }
        }
        // Every held secret derives the held ones of lower buckets that
        // share its prefix (those received before it; later ones replaced
        // the rest and derive from a later secret of a higher bucket).
        for (b, entry) in store.known.iter().enumerate() {
            let Some((index, secret)) = entry else {
                continue;
            };
            let mask = !((1u64 << b) - 1);
            for (earlier_index, earlier_secret) in store.known[..b].iter().flatten() {
                if earlier_index & mask != *index {
                    continue;
                }
                if derive_secret(secret, b as u32, *earlier_index) != *earlier_secret {
                    return Err(ShachainError::Inconsistent {
                        earlier_index: *earlier_index,
                    });
                }
            }
        }
        Ok(store)
    }

    /// `derive_old_secret(I)`: the secret of an index already received, or
    /// `None` if it has not been received yet.
    pub fn get(&self, index: u64) -> Option<[u8; 32]> {
        if index > MAX_INDEX {
            return None;
        }
        self.known.iter().enumerate().find_map(|(b, entry)| {
            let (known_index, secret) = entry.as_ref()?;
            let mask = !((1u64 << b) - 1);
            (index & mask == *known_index).then(|| derive_secret(secret, b as u32, index))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_examples_from_spec() {
        // "flip(0) in e3b0..." is "e2b0...", "flip(10) in e3b0..." is "e3b4...".
        let mut p = [0u8; 32];
        p[0] = 0xe3;
        p[1] = 0xb0;
        let mut q = p;
        q[0] ^= 1;
        assert_eq!(q[0], 0xe2);
        let mut r = p;
        r[1] ^= 1 << 2;
        assert_eq!(r[1], 0xb4);
    }

    #[test]
    fn store_rederives_everything_it_received() {
        let seed = [7u8; 32];
        let mut store = SecretStore::new();
        for i in 0..300u64 {
            let index = MAX_INDEX - i;
            store
                .insert(index, generate_from_seed(&seed, index))
                .expect("same seed");
        }
        for i in 0..300u64 {
            let index = MAX_INDEX - i;
            assert_eq!(store.get(index), Some(generate_from_seed(&seed, index)));
        }
        assert_eq!(store.get(MAX_INDEX - 300), None);
        assert!(matches!(
            store.insert(MAX_INDEX - 301, [0; 32]),
            Err(ShachainError::UnexpectedIndex { .. })
        ));
    }

    #[test]
    fn store_rebuilds_exactly_from_its_entries() {
        let seed = [9u8; 32];
        let mut store = SecretStore::new();
        for i in 0..200u64 {
            let rebuilt = SecretStore::from_entries(store.next_index(), store.entries())
                .expect("a store's own entries rebuild it");
            assert_eq!(rebuilt, store, "after {i} secrets");
            let index = MAX_INDEX - i;
            store
                .insert(index, generate_from_seed(&seed, index))
                .expect("same seed");
        }
        let entries: Vec<_> = store.entries().collect();
        // A flipped bit in a held secret is refused whenever another held
        // secret derives it or is derived from it (as `insert` would).
        let derives = |(hi, _): (u64, [u8; 32]), (lo, _): (u64, [u8; 32])| {
            let b = bucket_of(hi);
            bucket_of(lo) < b && lo & !((1u64 << b) - 1) == hi
        };
        let mut checked = 0;
        for k in 0..entries.len() {
            let related = entries
                .iter()
                .any(|e| derives(*e, entries[k]) || derives(entries[k], *e));
            let mut bad = entries.clone();
            bad[k].1[3] ^= 0x10;
            if related {
                checked += 1;
                assert!(
                    SecretStore::from_entries(store.next_index(), bad).is_err(),
                    "corrupted entry {k} accepted"
                );
            }
        }
        assert!(checked > 0, "some held secrets are related");
        // An entry not yet received, a duplicate bucket, a missing latest.
        let mut future = entries.clone();
        future.push((0, [0; 32]));
        assert!(SecretStore::from_entries(store.next_index(), future).is_err());
        let mut dup = entries.clone();
        dup.push(entries[0]);
        assert!(SecretStore::from_entries(store.next_index(), dup).is_err());
        let latest = store.next_index().expect("not exhausted") + 1;
        let missing: Vec<_> = entries.iter().copied().filter(|e| e.0 != latest).collect();
        assert_eq!(
            SecretStore::from_entries(store.next_index(), missing),
            Err(ShachainError::BadEntry { index: latest })
        );
        assert_eq!(
            SecretStore::from_entries(Some(MAX_INDEX + 1), []),
            Err(ShachainError::IndexTooLarge(MAX_INDEX + 1))
        );
    }
}
