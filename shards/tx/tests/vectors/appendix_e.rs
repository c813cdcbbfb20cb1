//! BOLT 3 Appendix E: key derivation vectors.
//!
//! Transcribed from BOLT 3 (lightning/bolts) by script from the machine-readable
//! vectors; hex strings are verbatim spec text, never retyped.

/// `base_secret`.
pub const BASE_SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// `per_commitment_secret`.
pub const PER_COMMITMENT_SECRET: &str =
    "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
/// `base_point`.
pub const BASE_POINT: &str = "036d6caac248af96f6afa7f904f550253a0f3ef3f5aa2fe6838a95b216691468e2";
/// `per_commitment_point`.
pub const PER_COMMITMENT_POINT: &str =
    "025f7117a78150fe2ef97db7cfc83bd57b2e2c0d0dd25eaf467a4a1c2a45ce1486";
/// derivation of pubkey from basepoint and per_commitment_point.
pub const LOCALPUBKEY: &str = "0235f2dbfaa89b57ec7b055afe29849ef7ddfeb1cefdb9ebdc43f5494984db29e5";
/// derivation of private key from basepoint secret and per_commitment_secret.
pub const LOCALPRIVKEY: &str = "cbced912d3b21bf196a766651e436aff192362621ce317704ea2f75d87e7be0f";
/// derivation of revocation pubkey from basepoint and per_commitment_point.
pub const REVOCATIONPUBKEY: &str =
    "02916e326636d19c33f13e8c0c3a03dd157f332f3e99c317c141dd865eb01f8ff0";
/// derivation of revocation secret from basepoint_secret and per_commitment_secret.
pub const REVOCATIONPRIVKEY: &str =
    "d09ffff62ddb2297ab000cc85bcb4283fdeb6aa052affbc9dddcf33b61078110";
