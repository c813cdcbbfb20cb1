//! Replay protection: refuse an onion whose shared secret was already seen
//! while an HTLC carrying it could still be accepted.
//!
//! BOLT 4 "Onion Decryption": a payment onion whose HMAC was received before
//! must be failed (unless the preimage is known, which is the caller's
//! business). Same onion, same shared secret, so the set is keyed by a
//! 128-bit tag derived from the shared secret (never the secret itself).
//!
//! Bounded and cheap: entries are grouped in buckets by expiry height, in a
//! ring of `window` buckets indexed by `height % window`; when the chain
//! advances, the buckets of the passed heights are emptied (work
//! proportional to what expires, amortised O(1) per insert). Lookups are one
//! hash probe. The total number of entries is capped by `capacity`; a full
//! set refuses new onions (the caller fails the HTLC with
//! `temporary_node_failure`) instead of growing. Pure: the caller passes the
//! chain height, and all memory is reserved at construction.

use std::collections::HashMap;

use crate::crypto;

/// Domain separator of the replay tag, so the tag reveals nothing usable
/// about the shared secret and cannot collide with other uses of it.
const REPLAY_TAG_DOMAIN: &[u8] = b"lnhub replay tag";

/// Replay-set configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Maximum entries kept at once. Default 1,000,000 (~48 MB with the map
    /// overhead): hours of traffic at thousands of HTLCs per second before
    /// expiries free space. Larger costs memory; smaller makes a burst of
    /// long-expiry HTLCs fill it, refusing forwards until blocks pass.
    pub capacity: usize,
    /// How far ahead of the current height an expiry may be, in blocks.
    /// Default 2,016 (two weeks), comfortably above the usual `max_htlc_cltv`
    /// so every acceptable HTLC fits; the ring has this many buckets.
    pub window: u32,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            capacity: 1_000_000,
            window: 2_016,
        }
    }
}

/// Why an onion was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before: fail the HTLC (unless the preimage is already known).
    Replayed,
    /// The set holds `capacity` entries: fail the HTLC as a transient node failure.
    Full,
    /// The expiry is not after the current height: the HTLC cannot be
    /// accepted anyway.
    AlreadyExpired,
    /// The expiry is more than `window` blocks ahead (`expiry_too_far`).
    TooFarAhead,
}

/// The set of recently seen onions. See the module docs for the design.
#[derive(Debug)]
pub struct ReplaySet {
    config: ReplayConfig,
    height: u32,
    entries: HashMap<u128, u32>,
    buckets: Vec<Vec<u128>>,
}

impl ReplaySet {
    /// An empty set at chain height `height`. Panics if `window` or
    /// `capacity` is zero (a config error caught at start-up).
    pub fn new(config: ReplayConfig, height: u32) -> Self {
        assert!(
            config.window > 0 && config.capacity > 0,
            "replay window and capacity must be non-zero"
        );
        ReplaySet {
            config,
            height,
            entries: HashMap::with_capacity(config.capacity),
            buckets: (0..config.window).map(|_| Vec::new()).collect(),
        }
    }

    /// Number of onions remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chain height the set was last told about.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The 128-bit tag an onion with `shared_secret` is recorded under: what a store keeps to
    /// rebuild the set after a restart ([`ReplaySet::restore`]), never the secret itself.
    pub fn tag(shared_secret: &[u8; 32]) -> u128 {
        let h = crypto::hmac_sha256(REPLAY_TAG_DOMAIN, shared_secret);
        let mut t = [0u8; 16];
        t.copy_from_slice(&h[..16]);
        u128::from_le_bytes(t)
    }

    fn bucket(&self, height: u32) -> usize {
        (height % self.config.window) as usize
    }

    /// Advances to chain height `height`, forgetting every entry whose
    /// expiry is at or below it. Lower heights (reorgs) are ignored:
    /// forgetting late is safe, forgetting early is not.
    pub fn handle_block_height(&mut self, height: u32) {
        self.handle_block_height_with(height, |_, _| {});
    }

    /// [`ReplaySet::handle_block_height`], telling `forgotten` each entry
    /// (tag, expiry) it forgets, so a store can delete its record.
    pub fn handle_block_height_with(&mut self, height: u32, mut forgotten: impl FnMut(u128, u32)) {
        if height <= self.height {
            return;
        }
        let steps = (height - self.height).min(self.config.window);
        for h in (height - steps + 1)..=height {
            let b = self.bucket(h);
            let mut bucket = std::mem::take(&mut self.buckets[b]);
            // Entries expire in (old height, old height + window], so the
            // bucket of a passed height only holds entries expiring at it.
            for tag in bucket.drain(..) {
                let expiry = self.entries.remove(&tag);
                assert!(
                    expiry.is_some_and(|e| e <= height),
                    "a replay bucket of a passed height holds only entries expiring by then"
                );
                forgotten(tag, expiry.expect("asserted above"));
            }
            self.buckets[b] = bucket;
        }
        self.height = height;
    }

    /// Puts back an entry a store kept (`tag` from [`ReplaySet::tag`]):
    /// as [`ReplaySet::check_and_insert`] would have recorded it, with the
    /// same bounds. An entry already present, expired or out of the window
    /// is not an error for a restore: it is skipped (`Ok(false)`).
    pub fn restore(&mut self, tag: u128, expiry_height: u32) -> Result<bool, ReplayError> {
        if self.entries.contains_key(&tag)
            || expiry_height <= self.height
            || expiry_height - self.height > self.config.window
        {
            return Ok(false);
        }
        if self.entries.len() >= self.config.capacity {
            return Err(ReplayError::Full);
        }
        self.entries.insert(tag, expiry_height);
        let b = self.bucket(expiry_height);
        self.buckets[b].push(tag);
        Ok(true)
    }

    /// Records the onion with `shared_secret`, valid until `expiry_height`
    /// (see [`crate::peel::PeeledHop::replay_expiry`]), or says why not.
    pub fn check_and_insert(
        &mut self,
        shared_secret: &[u8; 32],
        expiry_height: u32,
    ) -> Result<(), ReplayError> {
        let tag = Self::tag(shared_secret);
        if self.entries.contains_key(&tag) {
            return Err(ReplayError::Replayed);
        }
        if expiry_height <= self.height {
            return Err(ReplayError::AlreadyExpired);
        }
        if expiry_height - self.height > self.config.window {
            return Err(ReplayError::TooFarAhead);
        }
        if self.entries.len() >= self.config.capacity {
            return Err(ReplayError::Full);
        }
        self.entries.insert(tag, expiry_height);
        let b = self.bucket(expiry_height);
        self.buckets[b].push(tag);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_expiry_and_capacity() {
        let mut s = ReplaySet::new(
            ReplayConfig {
                capacity: 2,
                window: 10,
            },
            100,
        );
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(s.check_and_insert(&a, 105), Ok(()));
        assert_eq!(s.check_and_insert(&a, 109), Err(ReplayError::Replayed));
        assert_eq!(
            s.check_and_insert(&b, 100),
            Err(ReplayError::AlreadyExpired)
        );
        assert_eq!(s.check_and_insert(&b, 111), Err(ReplayError::TooFarAhead));
        assert_eq!(s.check_and_insert(&b, 110), Ok(()));
        assert_eq!(s.check_and_insert(&[3; 32], 106), Err(ReplayError::Full));
        s.handle_block_height(104);
        assert_eq!(s.check_and_insert(&a, 109), Err(ReplayError::Replayed));
        s.handle_block_height(105);
        assert_eq!(s.len(), 1);
        assert_eq!(s.check_and_insert(&a, 109), Ok(()));
        // A jump past the whole window clears everything, and says so.
        let mut forgotten = Vec::new();
        s.handle_block_height_with(1_000, |tag, expiry| forgotten.push((tag, expiry)));
        assert!(s.is_empty());
        forgotten.sort();
        let mut want = vec![(ReplaySet::tag(&a), 109), (ReplaySet::tag(&b), 110)];
        want.sort();
        assert_eq!(forgotten, want);
    }

    #[test]
    fn restored_entries_refuse_replays_like_inserted_ones() {
        let config = ReplayConfig {
            capacity: 2,
            window: 10,
        };
        let mut s = ReplaySet::new(config, 100);
        let a = [1u8; 32];
        assert_eq!(s.restore(ReplaySet::tag(&a), 105), Ok(true));
        assert_eq!(s.check_and_insert(&a, 105), Err(ReplayError::Replayed));
        assert_eq!(
            s.restore(ReplaySet::tag(&a), 105),
            Ok(false),
            "already there"
        );
        assert_eq!(
            s.restore(ReplaySet::tag(&[2; 32]), 100),
            Ok(false),
            "expired"
        );
        assert_eq!(
            s.restore(ReplaySet::tag(&[2; 32]), 111),
            Ok(false),
            "too far"
        );
        assert_eq!(s.restore(ReplaySet::tag(&[2; 32]), 106), Ok(true));
        assert_eq!(
            s.restore(ReplaySet::tag(&[3; 32]), 106),
            Err(ReplayError::Full)
        );
        s.handle_block_height(105);
        assert_eq!(s.check_and_insert(&a, 109), Ok(()));
    }
}
