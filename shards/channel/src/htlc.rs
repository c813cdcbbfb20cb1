//! The life of one update across the two commitment transactions (BOLT 2
//! "Normal Operation", the five states listed there, and "Forwarding
//! HTLCs" for *irrevocably committed*).
//!
//! Every change to a channel (adding an HTLC, removing it, changing the
//! fee) is an *update* proposed by one side. It goes into the *receiver's*
//! commitment first, and into the *proposer's* only once the receiver has
//! revoked the commitment without it. [`UpdateState`] is that progress,
//! and [`View`] names the four commitments a node reasons about; [`applies`]
//! is the single rule that says whether an update is part of a commitment.
//! An HTLC is two updates: its add (proposed by the offerer) and its
//! removal (proposed by the other side, only once the add is irrevocable).
//!
//! Our own `commitment_signed` can only be outstanding once at a time (the
//! next signature needs the point the peer sends in `revoke_and_ack`), and
//! the same holds for the peer's; that is what keeps this to five states.

use lnhub_tx::Side;
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage};

/// Progress of one update, proposed by one side, through the two
/// commitments. States only move forward; the numbering is the order.
///
/// For an update **we** propose (`P` = local):
/// - `Announced`: we sent the update message, no `commitment_signed` of ours
///   covers it yet.
/// - `ReceiverSigned`: we sent `commitment_signed` after it; it is in the
///   peer's latest commitment, whose predecessor is not revoked yet.
/// - `ReceiverRevoked`: the peer's `revoke_and_ack` for that signature
///   arrived; it will be in the next commitment the peer signs for us.
/// - `Irrevocable`: the peer's next `commitment_signed` arrived and we
///   revoked our old commitment (we skip `ProposerSigned`: receiving the
///   signature and revoking are one transition for us).
///
/// For an update **the peer** proposes (`P` = remote):
/// - `Announced`: the update message arrived, no `commitment_signed` of the
///   peer covers it yet.
/// - `ReceiverRevoked`: the peer's `commitment_signed` arrived, we accepted
///   it and revoked our old commitment (we skip `ReceiverSigned`).
/// - `ProposerSigned`: we sent `commitment_signed` covering it; the peer has
///   not revoked its old commitment yet.
/// - `Irrevocable`: the peer's `revoke_and_ack` for that signature arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateState {
    /// Sent or received, in no signed commitment yet.
    Announced,
    /// In the receiver's latest commitment, its predecessor not yet revoked
    /// (only for our own updates).
    ReceiverSigned,
    /// In the receiver's current commitment (its predecessor revoked),
    /// pending for the proposer's commitment.
    ReceiverRevoked,
    /// Also in the proposer's latest commitment, whose predecessor is not
    /// revoked yet (only for the peer's updates).
    ProposerSigned,
    /// In both current commitments, every commitment without it revoked.
    Irrevocable,
}

/// The four commitment transactions a node reasons about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// Our latest commitment (the one we could broadcast now).
    LocalCurrent,
    /// The commitment the peer's next `commitment_signed` will sign for us:
    /// every update the peer sent so far plus ours that it acknowledged.
    LocalNext,
    /// The peer's latest commitment, as we last signed it.
    RemoteCurrent,
    /// The commitment our next `commitment_signed` will sign for the peer:
    /// every update we sent so far plus the peer's that we acknowledged.
    RemoteNext,
}

impl View {
    /// The side that can broadcast this commitment.
    pub fn owner(self) -> Side {
        match self {
            View::LocalCurrent | View::LocalNext => Side::Local,
            View::RemoteCurrent | View::RemoteNext => Side::Remote,
        }
    }
}

/// Whether an update proposed by `proposer`, in `state`, is part of the
/// commitment `view`.
pub fn applies(proposer: Side, state: UpdateState, view: View) -> bool {
    use UpdateState::*;
    match (proposer, view) {
        (Side::Local, View::RemoteNext) | (Side::Remote, View::LocalNext) => true,
        (Side::Local, View::RemoteCurrent) => state >= ReceiverSigned,
        (Side::Local, View::LocalNext) => state >= ReceiverRevoked,
        (Side::Local, View::LocalCurrent) => state >= Irrevocable,
        (Side::Remote, View::LocalCurrent) => state >= ReceiverRevoked,
        (Side::Remote, View::RemoteNext) => state >= ReceiverRevoked,
        (Side::Remote, View::RemoteCurrent) => state >= ProposerSigned,
    }
}

/// How an HTLC is removed (BOLT 2 "Removing an HTLC"): the one outcome type of
/// the channel, in its books and in what it reports for the HTLCs we offered
/// ([`crate::Effect::Resolved`]: a fulfill as soon as it is durable, so the
/// preimage goes upstream at once; a failure once its removal is irrevocably
/// committed, so the incoming HTLC may now be failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalKind {
    /// `update_fulfill_htlc`: the amount goes to the receiver of the HTLC.
    Fulfill(PaymentPreimage),
    /// `update_fail_htlc` with its encrypted `reason`: the amount returns
    /// to the offerer.
    Fail(Vec<u8>),
    /// `update_fail_malformed_htlc`: the amount returns to the offerer.
    FailMalformed {
        /// `sha256_of_onion`.
        sha256_of_onion: [u8; 32],
        /// `failure_code` (BADONION bit set).
        failure_code: u16,
    },
}

impl RemovalKind {
    /// Whether the HTLC's amount changes hands.
    pub fn is_fulfill(&self) -> bool {
        matches!(self, RemovalKind::Fulfill(_))
    }
}

/// A removal and its progress; proposed by the side that did not offer the
/// HTLC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Fulfill or fail.
    pub kind: RemovalKind,
    /// Progress of the removal update.
    pub state: UpdateState,
    /// When we sent it (our send sequence; 0 for the peer's), to
    /// retransmit in the original order.
    pub sent_seq: u64,
}

/// One HTLC in flight, from `update_add_htlc` until its removal is
/// irrevocably committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Htlc {
    /// The side that offered it (sent `update_add_htlc`).
    pub offerer: Side,
    /// `id`, unique per offerer.
    pub id: u64,
    /// `amount_msat`.
    pub amount_msat: Msat,
    /// `payment_hash`.
    pub payment_hash: PaymentHash,
    /// `cltv_expiry`.
    pub cltv_expiry: u32,
    /// Progress of the add.
    pub add_state: UpdateState,
    /// When we sent the add (our send sequence; 0 for the peer's).
    pub sent_seq: u64,
    /// The removal, once one was sent or received.
    pub removal: Option<Removal>,
    /// `onion_routing_packet`: the peer's (for the forwarding decision) or
    /// ours (to retransmit after a reconnection).
    pub onion_routing_packet: [u8; ONION_PACKET_LEN],
    /// For an HTLC we offered: its resolution was already reported (a
    /// fulfill the peer sent, then reversed on a disconnection, is not
    /// reported again).
    pub resolution_reported: bool,
    /// An HTLC the peer offered that pushed our trimmed-HTLC exposure over
    /// `max_dust_htlc_exposure_msat`: BOLT 2 says fail it once committed
    /// and never reveal its preimage.
    pub over_dust_exposure: bool,
    /// An HTLC the peer offered after we sent `shutdown` (it had not seen
    /// ours yet): BOLT 2 says we SHOULD fail to route it.
    pub added_after_shutdown: bool,
}

impl Htlc {
    /// Whether the HTLC is an output (or trimmed output) of commitment
    /// `view`: its add applies and its removal does not.
    pub fn is_in(&self, view: View) -> bool {
        applies(self.offerer, self.add_state, view)
            && !self
                .removal
                .as_ref()
                .is_some_and(|r| applies(self.offerer.other(), r.state, view))
    }

    /// The id given to `lnhub_tx::HtlcSpec::id`: `id << 1`, low bit set for
    /// HTLCs the peer offered.
    pub fn spec_id(&self) -> u64 {
        assert!(
            self.id < 1 << 63,
            "HTLC ids count from 0 and never reach 2^63"
        );
        (self.id << 1) | u64::from(self.offerer == Side::Remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks an update of each proposer through its states and checks the
    /// views against BOLT 2's five-step description.
    #[test]
    fn update_enters_receiver_commitment_first() {
        use UpdateState::*;
        let ours = [Announced, ReceiverSigned, ReceiverRevoked, Irrevocable];
        let expect_ours = [
            // (LocalCurrent, LocalNext, RemoteCurrent, RemoteNext)
            (false, false, false, true),
            (false, false, true, true),
            (false, true, true, true),
            (true, true, true, true),
        ];
        for (s, e) in ours.iter().zip(expect_ours) {
            let got = (
                applies(Side::Local, *s, View::LocalCurrent),
                applies(Side::Local, *s, View::LocalNext),
                applies(Side::Local, *s, View::RemoteCurrent),
                applies(Side::Local, *s, View::RemoteNext),
            );
            assert_eq!(got, e, "local update in {s:?}");
        }
        let theirs = [Announced, ReceiverRevoked, ProposerSigned, Irrevocable];
        let expect_theirs = [
            (false, true, false, false),
            (true, true, false, true),
            (true, true, true, true),
            (true, true, true, true),
        ];
        for (s, e) in theirs.iter().zip(expect_theirs) {
            let got = (
                applies(Side::Remote, *s, View::LocalCurrent),
                applies(Side::Remote, *s, View::LocalNext),
                applies(Side::Remote, *s, View::RemoteCurrent),
                applies(Side::Remote, *s, View::RemoteNext),
            );
            assert_eq!(got, e, "remote update in {s:?}");
        }
    }
}
