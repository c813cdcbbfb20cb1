//! BOLT 3 for lnhub: keys, scripts, commitment, HTLC and closing
//! transactions, byte-exact to the spec and valid under Bitcoin Core's
//! script interpreter.
//!
//! This crate is pure (sans-IO): it builds transactions and yields the
//! sighashes ([`secp256k1::Message`]) that must be signed or checked. It never
//! decides *when* to sign; that belongs to the channel state machine. The
//! only parallelism is the [`batch`] module, which runs on the caller's
//! current rayon pool.
//!
//! Both channel types a hub must support are covered (see [`ChannelType`]):
//! `option_static_remotekey` (legacy, still in use) and `option_anchors`
//! (zero-fee HTLC transactions, today's default).
//!
//! # Call order (one commitment)
//!
//! 1. Once per channel: [`ChannelParams::new`] validates the negotiated
//!    parameters and derives the funding script and the commitment-number
//!    obscuring factor.
//! 2. Per commitment number: [`CommitmentKeys::derive`] for the owner of the
//!    commitment and its `per_commitment_point`, or
//!    [`CommitmentKeys::derive_for`] its spec, which leaves out the two HTLC
//!    keys when every HTLC is trimmed ([`has_htlc_outputs`]): each key is a
//!    point multiplication, and a hub forwarding small payments builds
//!    such commitments most of the time.
//! 3. [`build_commitment`] with the balances and HTLCs ([`CommitmentSpec`])
//!    returns a [`CommitmentTx`]: the unsigned transaction, the kind of each
//!    output and, for each HTLC, its output index or `None` if trimmed.
//!    [`build_commitment_into`] builds the same into a previous
//!    [`CommitmentTx`], reusing its allocations (a channel doing round
//!    after round allocates nothing per HTLC).
//! 4. [`CommitmentTx::sighash`] for the funding signature;
//!    [`HtlcSighasher`] for each untrimmed HTLC's sighash, in output order
//!    (the order of `commitment_signed.htlc_signatures`), without
//!    allocating; [`htlc_tx`] when the whole HTLC transaction is needed
//!    (broadcast).
//! 5. [`batch::verify_batch`] / [`batch::sign_batch`] check or produce many
//!    signatures at once; [`accounting::check_commitment_value`] asserts that
//!    no satoshi was created or lost.
//!
//! Every context (`Secp256k1`) is owned by the caller and passed in; no
//! function creates one.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod accounting;
pub mod batch;
pub mod closing;
pub mod commitment;
pub mod fees;
pub mod htlc;
pub mod htlc_sighash;
pub mod keys;
pub mod params;
pub mod scripts;
pub mod shachain;
pub mod sighash;
pub mod witness;

pub use commitment::{
    build_commitment, build_commitment_into, has_htlc_outputs, CommitmentError, CommitmentSpec,
    CommitmentTx, HtlcDirection, HtlcOutput, HtlcSpec, OutputKind,
};
pub use htlc::{htlc_tx, HtlcTx, HtlcTxError, HtlcTxKind};
pub use htlc_sighash::HtlcSighasher;
pub use keys::{ChannelPublicKeys, CommitmentKeys, HtlcKeys, KeyError};
pub use params::{ChannelParams, ChannelType, ParamsError, Side, SideParams};
pub use shachain::{generate_from_seed, SecretStore, ShachainError};
