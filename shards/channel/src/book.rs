//! The channel's books: balances, HTLCs in flight, fee updates and
//! commitment numbers, and how the three commitment-dance messages move
//! every update along (BOLT 2 "Normal Operation": `commitment_signed`,
//! `revoke_and_ack`, `update_fee`).
//!
//! [`Book`] is pure bookkeeping with no cryptography: it can materialise
//! any of the four [`View`]s as a balance pair, a feerate and an HTLC list
//! (the input of `lnhub_tx::build_commitment`), and it applies the three
//! transitions ([`Book::on_send_commitment`], [`Book::on_recv_commitment`],
//! [`Book::on_recv_revoke`]). An HTLC whose removal becomes irrevocable is
//! folded into the base balances and leaves the table; so does a fee update.
//! Limits (reserve, counts, dust) are checked by the caller on a view.

use lnhub_tx::{HtlcDirection, HtlcSpec, Side};
use lnhub_wire::types::Msat;

use bitcoin::hashes::{sha256, Hash};

use crate::htlc::{applies, Htlc, RemovalKind, UpdateState, View};

/// The most fee updates that can be pending at once: one per state an
/// update can wait in before it is irrevocable (later updates in the same
/// state replace earlier ones, which can then never be seen on their own).
const MAX_PENDING_FEE_UPDATES: usize = 4;

/// A feerate change proposed by the funder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeUpdate {
    /// The new `feerate_per_kw`.
    pub feerate_per_kw: u32,
    /// Its progress.
    pub state: UpdateState,
    /// When we sent it (our send sequence; 0 for the peer's).
    pub sent_seq: u64,
}

/// One of the three transitions of the commitment dance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transition {
    /// We sent `commitment_signed`.
    SendCommitment,
    /// We accepted the peer's `commitment_signed` and revoked our old
    /// commitment.
    RecvCommitment,
    /// We accepted the peer's `revoke_and_ack`.
    RecvRevoke,
}

/// The state an update proposed by `proposer` moves to.
fn advance(proposer: Side, s: UpdateState, t: Transition) -> UpdateState {
    use Transition::*;
    use UpdateState::*;
    match (proposer, t, s) {
        (Side::Local, SendCommitment, Announced) => ReceiverSigned,
        (Side::Local, RecvRevoke, ReceiverSigned) => ReceiverRevoked,
        (Side::Local, RecvCommitment, ReceiverRevoked) => Irrevocable,
        (Side::Remote, RecvCommitment, Announced) => ReceiverRevoked,
        (Side::Remote, SendCommitment, ReceiverRevoked) => ProposerSigned,
        (Side::Remote, RecvRevoke, ProposerSigned) => Irrevocable,
        _ => s,
    }
}

/// Something a transition made final.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookEvent {
    /// An HTLC the peer offered is irrevocably committed: it may be
    /// forwarded (or settled, if we are the destination).
    InboundCommitted {
        /// Its `id`.
        id: u64,
    },
    /// An HTLC we offered was removed irrevocably.
    OutboundRemoved {
        /// Its `id`.
        id: u64,
        /// How (a fulfill was already reported when it arrived).
        kind: RemovalKind,
        /// Whether a resolution was already reported for it.
        reported: bool,
    },
    /// An HTLC the peer offered was removed irrevocably.
    InboundRemoved {
        /// Its `id`.
        id: u64,
    },
}

/// Balances and feerate of one commitment, from its owner's side, before
/// fees; the HTLCs go to a caller-owned list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewSummary {
    /// Which commitment.
    pub view: View,
    /// Its commitment number.
    pub commitment_number: u64,
    /// Its `feerate_per_kw`.
    pub feerate_per_kw: u32,
    /// The owner's balance, HTLCs excluded, before fees.
    pub to_local_msat: u64,
    /// The other side's balance, HTLCs excluded, before fees.
    pub to_remote_msat: u64,
}

impl ViewSummary {
    /// The balance of `side` (channel sides, not owner-relative).
    pub fn balance_of(&self, side: Side) -> u64 {
        if side == self.view.owner() {
            self.to_local_msat
        } else {
            self.to_remote_msat
        }
    }
}

/// An HTLC not yet in the books, for "what if" checks before adding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prospective {
    /// Who would offer it.
    pub offerer: Side,
    /// Its amount.
    pub amount_msat: Msat,
    /// Its expiry.
    pub cltv_expiry: u32,
}

/// The books of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    pub(crate) funder: Side,
    pub(crate) capacity_msat: u64,
    /// Our balance with every fully-resolved HTLC folded in.
    pub(crate) base_local_msat: u64,
    /// The peer's balance, likewise.
    pub(crate) base_remote_msat: u64,
    /// The feerate every commitment uses unless a fee update applies.
    pub(crate) base_feerate_per_kw: u32,
    /// Pending fee updates, oldest first, at most one per state.
    pub(crate) fee_updates: Vec<FeeUpdate>,
    /// HTLCs in flight, in the order they were added.
    pub(crate) htlcs: Vec<Htlc>,
    pub(crate) next_local_htlc_id: u64,
    pub(crate) next_remote_htlc_id: u64,
    pub(crate) local_commitment_number: u64,
    pub(crate) remote_commitment_number: u64,
}

impl Book {
    /// The books right after funding: commitment 0 on both sides, no HTLC.
    pub fn new(funder: Side, to_local: Msat, to_remote: Msat, feerate_per_kw: u32) -> Self {
        let capacity_msat = to_local
            .0
            .checked_add(to_remote.0)
            .expect("channel balances must not overflow u64");
        Book {
            funder,
            capacity_msat,
            base_local_msat: to_local.0,
            base_remote_msat: to_remote.0,
            base_feerate_per_kw: feerate_per_kw,
            fee_updates: Vec::with_capacity(MAX_PENDING_FEE_UPDATES + 1),
            htlcs: Vec::new(),
            next_local_htlc_id: 0,
            next_remote_htlc_id: 0,
            local_commitment_number: 0,
            remote_commitment_number: 0,
        }
    }

    /// The side paying the commitment fee.
    pub fn funder(&self) -> Side {
        self.funder
    }

    /// The balance of `side` with every fully-resolved HTLC folded in: an HTLC in flight is
    /// still counted in its offerer's balance.
    pub fn base_balance(&self, side: Side) -> u64 {
        match side {
            Side::Local => self.base_local_msat,
            Side::Remote => self.base_remote_msat,
        }
    }

    /// `funding_satoshis * 1000`.
    pub fn capacity_msat(&self) -> u64 {
        self.capacity_msat
    }

    /// Our current commitment number.
    pub fn local_commitment_number(&self) -> u64 {
        self.local_commitment_number
    }

    /// The peer's latest commitment number (the one we signed last).
    pub fn remote_commitment_number(&self) -> u64 {
        self.remote_commitment_number
    }

    /// The id our next `update_add_htlc` carries.
    pub fn next_local_htlc_id(&self) -> u64 {
        self.next_local_htlc_id
    }

    /// The id the peer's next `update_add_htlc` must carry.
    pub fn next_remote_htlc_id(&self) -> u64 {
        self.next_remote_htlc_id
    }

    /// The HTLCs in flight.
    pub fn htlcs(&self) -> &[Htlc] {
        &self.htlcs
    }

    /// Pending fee updates, oldest first.
    pub fn fee_updates(&self) -> &[FeeUpdate] {
        &self.fee_updates
    }

    /// The HTLC `id` offered by `offerer`.
    pub fn htlc(&self, offerer: Side, id: u64) -> Option<&Htlc> {
        self.htlcs
            .iter()
            .find(|h| h.offerer == offerer && h.id == id)
    }

    /// Mutable access to the HTLC `id` offered by `offerer`.
    pub fn htlc_mut(&mut self, offerer: Side, id: u64) -> Option<&mut Htlc> {
        self.htlcs
            .iter_mut()
            .find(|h| h.offerer == offerer && h.id == id)
    }

    /// The commitment number of `view`.
    pub fn commitment_number(&self, view: View) -> u64 {
        match view {
            View::LocalCurrent => self.local_commitment_number,
            View::LocalNext => self.local_commitment_number + 1,
            View::RemoteCurrent => self.remote_commitment_number,
            View::RemoteNext => self.remote_commitment_number + 1,
        }
    }

    /// The feerate of `view`: the latest fee update that applies to it.
    pub fn feerate(&self, view: View) -> u32 {
        self.fee_updates
            .iter()
            .rev()
            .find(|f| applies(self.funder, f.state, view))
            .map_or(self.base_feerate_per_kw, |f| f.feerate_per_kw)
    }

    /// Materialises `view` (with `feerate` overriding its feerate and
    /// `extra` added, for checks); the HTLCs go into `out`, which is
    /// cleared first (its allocation is reused). `None` if the offerer of
    /// `extra` does not even have its amount.
    pub fn view_with(
        &self,
        view: View,
        feerate: Option<u32>,
        extra: Option<Prospective>,
        out: &mut Vec<HtlcSpec>,
    ) -> Option<ViewSummary> {
        out.clear();
        let owner = view.owner();
        let mut local = self.base_local_msat;
        let mut remote = self.base_remote_msat;
        let take = |offerer: Side, amount: u64, local: &mut u64, remote: &mut u64| {
            let bal = if offerer == Side::Local {
                local
            } else {
                remote
            };
            *bal = bal
                .checked_sub(amount)
                .unwrap_or_else(|| panic!("{offerer:?} balance must cover its HTLCs in {view:?}"));
        };
        for h in &self.htlcs {
            if !applies(h.offerer, h.add_state, view) {
                assert!(
                    h.removal
                        .as_ref()
                        .is_none_or(|r| !applies(h.offerer.other(), r.state, view)),
                    "a removal never applies where its add does not"
                );
                continue;
            }
            let amount = h.amount_msat.0;
            take(h.offerer, amount, &mut local, &mut remote);
            match &h.removal {
                Some(r) if applies(h.offerer.other(), r.state, view) => {
                    let to = if r.kind.is_fulfill() {
                        h.offerer.other()
                    } else {
                        h.offerer
                    };
                    if to == Side::Local {
                        local += amount;
                    } else {
                        remote += amount;
                    }
                }
                _ => out.push(HtlcSpec {
                    id: h.spec_id(),
                    direction: if h.offerer == owner {
                        HtlcDirection::Offered
                    } else {
                        HtlcDirection::Received
                    },
                    amount_msat: amount,
                    cltv_expiry: h.cltv_expiry,
                    payment_hash: sha256::Hash::from_byte_array(h.payment_hash.0),
                }),
            }
        }
        if let Some(p) = extra {
            let bal = if p.offerer == Side::Local {
                &mut local
            } else {
                &mut remote
            };
            *bal = bal.checked_sub(p.amount_msat.0)?;
            out.push(HtlcSpec {
                id: u64::MAX,
                direction: if p.offerer == owner {
                    HtlcDirection::Offered
                } else {
                    HtlcDirection::Received
                },
                amount_msat: p.amount_msat.0,
                cltv_expiry: p.cltv_expiry,
                payment_hash: sha256::Hash::all_zeros(),
            });
        }
        let htlc_total: u64 = out.iter().map(|h| h.amount_msat).sum();
        assert_eq!(
            local + remote + htlc_total,
            self.capacity_msat,
            "value is conserved in {view:?}"
        );
        let (to_local_msat, to_remote_msat) = match owner {
            Side::Local => (local, remote),
            Side::Remote => (remote, local),
        };
        Some(ViewSummary {
            view,
            commitment_number: self.commitment_number(view),
            feerate_per_kw: feerate.unwrap_or_else(|| self.feerate(view)),
            to_local_msat,
            to_remote_msat,
        })
    }

    /// Materialises `view` as it is.
    pub fn view(&self, view: View, out: &mut Vec<HtlcSpec>) -> ViewSummary {
        self.view_with(view, None, None, out)
            .expect("a view without a prospective HTLC always exists")
    }

    /// Records a new HTLC (after the caller's checks) and bumps the
    /// offerer's next id.
    pub fn add_htlc(&mut self, htlc: Htlc) {
        let next = match htlc.offerer {
            Side::Local => &mut self.next_local_htlc_id,
            Side::Remote => &mut self.next_remote_htlc_id,
        };
        assert_eq!(htlc.id, *next, "HTLC ids are consecutive per offerer");
        assert_eq!(
            htlc.add_state,
            UpdateState::Announced,
            "new HTLCs start announced"
        );
        *next += 1;
        self.htlcs.push(htlc);
    }

    /// Records a fee update proposed by the funder.
    pub fn add_fee_update(&mut self, feerate_per_kw: u32, sent_seq: u64) {
        self.fee_updates.push(FeeUpdate {
            feerate_per_kw,
            state: UpdateState::Announced,
            sent_seq,
        });
        self.normalise_fee_updates();
    }

    /// Whether a `commitment_signed` from us would carry any update: one of
    /// ours not yet signed, or one of the peer's we acknowledged but have
    /// not yet signed into its commitment.
    pub fn has_changes_for_remote(&self) -> bool {
        let pending = |proposer: Side, s: UpdateState| match proposer {
            Side::Local => s == UpdateState::Announced,
            Side::Remote => s == UpdateState::ReceiverRevoked,
        };
        self.htlcs.iter().any(|h| {
            pending(h.offerer, h.add_state)
                || h.removal
                    .as_ref()
                    .is_some_and(|r| pending(h.offerer.other(), r.state))
        }) || self
            .fee_updates
            .iter()
            .any(|f| pending(self.funder, f.state))
    }

    /// On disconnection, reverses every update the peer sent that no
    /// `commitment_signed` of the peer covered (BOLT 2 "Message
    /// Retransmission"): the peer will send them again. Our own updates
    /// stay; we retransmit them.
    pub fn reverse_remote_uncommitted(&mut self) {
        let mut first_dropped = None;
        self.htlcs.retain(|h| {
            let drop = h.offerer == Side::Remote && h.add_state == UpdateState::Announced;
            if drop {
                assert!(h.removal.is_none(), "an unacknowledged HTLC has no removal");
                first_dropped = Some(first_dropped.map_or(h.id, |f: u64| f.min(h.id)));
            }
            !drop
        });
        if let Some(id) = first_dropped {
            self.next_remote_htlc_id = id;
        }
        for h in &mut self.htlcs {
            if h.offerer == Side::Local
                && h.removal
                    .as_ref()
                    .is_some_and(|r| r.state == UpdateState::Announced)
            {
                h.removal = None;
            }
        }
        if self.funder == Side::Remote {
            self.fee_updates
                .retain(|f| f.state != UpdateState::Announced);
        }
    }

    /// We sent `commitment_signed` for the peer's next commitment.
    pub fn on_send_commitment(&mut self) {
        self.remote_commitment_number += 1;
        self.transition(Transition::SendCommitment, &mut |_| {});
    }

    /// We accepted the peer's `commitment_signed` and revoked our previous
    /// commitment.
    pub fn on_recv_commitment(&mut self, events: &mut impl FnMut(BookEvent)) {
        self.local_commitment_number += 1;
        self.transition(Transition::RecvCommitment, events);
    }

    /// We accepted the peer's `revoke_and_ack`.
    pub fn on_recv_revoke(&mut self, events: &mut impl FnMut(BookEvent)) {
        self.transition(Transition::RecvRevoke, events);
    }

    fn transition(&mut self, t: Transition, events: &mut impl FnMut(BookEvent)) {
        for h in &mut self.htlcs {
            let was = h.add_state;
            h.add_state = advance(h.offerer, h.add_state, t);
            if was != h.add_state
                && h.add_state == UpdateState::Irrevocable
                && h.offerer == Side::Remote
            {
                events(BookEvent::InboundCommitted { id: h.id });
            }
            if let Some(r) = &mut h.removal {
                r.state = advance(h.offerer.other(), r.state, t);
            }
        }
        // Fold irrevocably removed HTLCs into the base balances, in one
        // pass that keeps the rest in add order (an HTLC holds its onion,
        // so removing them one by one would shift the table each time).
        let (base_local, base_remote) = (&mut self.base_local_msat, &mut self.base_remote_msat);
        self.htlcs.retain_mut(|h| {
            let Some(r) = h.removal.take_if(|r| r.state == UpdateState::Irrevocable) else {
                return true;
            };
            assert_eq!(h.add_state, UpdateState::Irrevocable, "removed after add");
            let amount = h.amount_msat.0;
            if r.kind.is_fulfill() {
                let (from, to) = match h.offerer {
                    Side::Local => (&mut *base_local, &mut *base_remote),
                    Side::Remote => (&mut *base_remote, &mut *base_local),
                };
                *from = from
                    .checked_sub(amount)
                    .expect("the offerer's base balance covers a fulfilled HTLC");
                *to += amount;
            }
            events(match h.offerer {
                Side::Local => BookEvent::OutboundRemoved {
                    id: h.id,
                    kind: r.kind,
                    reported: h.resolution_reported,
                },
                Side::Remote => BookEvent::InboundRemoved { id: h.id },
            });
            false
        });
        let funder = self.funder;
        for f in &mut self.fee_updates {
            f.state = advance(funder, f.state, t);
        }
        self.normalise_fee_updates();
    }

    /// Folds irrevocable fee updates into the base feerate and keeps only
    /// the latest update of each state.
    fn normalise_fee_updates(&mut self) {
        if let Some(last) = self
            .fee_updates
            .iter()
            .rposition(|f| f.state == UpdateState::Irrevocable)
        {
            self.base_feerate_per_kw = self.fee_updates[last].feerate_per_kw;
            self.fee_updates.drain(..=last);
        }
        let mut i = 0;
        while i + 1 < self.fee_updates.len() {
            if self.fee_updates[i].state == self.fee_updates[i + 1].state {
                self.fee_updates.remove(i);
            } else {
                i += 1;
            }
        }
        assert!(
            self.fee_updates.len() <= MAX_PENDING_FEE_UPDATES,
            "at most one pending fee update per state"
        );
        assert!(
            self.fee_updates.windows(2).all(|w| w[0].state > w[1].state),
            "older fee updates are further along"
        );
    }
}
