//! One test per failure code the decision can return, plus the fee arithmetic of BOLT 7's
//! routing example and the policy grace period.

use super::*;
use proptest::prelude::*;

const SCID: ShortChannelId = ShortChannelId(0x0000_0100_0000_0001);
const HEIGHT: u32 = 800_000;
const NOW: u64 = 1_700_000_000;

fn policy() -> Policy {
    Policy {
        fee_base_msat: 1_000,
        fee_proportional_millionths: 100,
        cltv_expiry_delta: 40,
        htlc_minimum_msat: Msat(1_000),
        htlc_maximum_msat: Msat(1_000_000_000),
    }
}

fn channel() -> OutgoingChannel {
    OutgoingChannel {
        short_channel_id: SCID,
        policy: PolicyHistory::new(policy()),
        disabled: false,
        usable: true,
        available_msat: Msat(500_000_000),
        free_htlc_slots: 10,
    }
}

/// A request paying exactly the fee and delta of [`policy`] for 1,000,000 msat.
fn request() -> Request {
    let amount = Msat(1_000_000);
    Request {
        incoming_amount_msat: Msat(amount.0 + 1_000 + 100),
        incoming_cltv_expiry: HEIGHT + 100 + 40,
        short_channel_id: SCID,
        amt_to_forward: amount,
        outgoing_cltv_value: HEIGHT + 100,
        blinded: None,
    }
}

fn decide_with(r: &Request, c: Option<&OutgoingChannel>) -> Decision {
    decide(r, c, HEIGHT, NOW, &Limits::default())
}

fn code(d: &Decision) -> u16 {
    match d {
        Decision::Fail(f) => f.failure_code(),
        Decision::FailMalformed { failure_code, .. } => *failure_code,
        Decision::Forward { .. } => 0,
    }
}

#[test]
fn exact_fee_and_delta_forward() {
    let d = decide_with(&request(), Some(&channel()));
    assert_eq!(
        d,
        Decision::Forward {
            short_channel_id: SCID,
            amount_msat: Msat(1_000_000),
            cltv_expiry: HEIGHT + 100,
            fee_msat: Msat(1_100)
        }
    );
}

#[test]
fn unknown_next_peer() {
    assert_eq!(
        decide_with(&request(), None),
        Decision::Fail(FailureMessage::UnknownNextPeer)
    );
}

#[test]
fn unusable_channel_is_temporary() {
    let mut c = channel();
    c.usable = false;
    assert_eq!(code(&decide_with(&request(), Some(&c))), 0x1007);
}

#[test]
fn amount_below_minimum_reports_outgoing_amount() {
    let mut c = channel();
    c.policy.current.htlc_minimum_msat = Msat(2_000_000);
    let d = decide_with(&request(), Some(&c));
    assert_eq!(
        d,
        Decision::Fail(FailureMessage::AmountBelowMinimum {
            htlc_msat: Msat(1_000_000),
            channel_update: vec![]
        })
    );
}

#[test]
fn above_maximum_is_temporary() {
    let mut c = channel();
    c.policy.current.htlc_maximum_msat = Msat(999_999);
    assert_eq!(code(&decide_with(&request(), Some(&c))), 0x1007);
}

#[test]
fn fee_one_msat_short_is_insufficient_and_reports_incoming_amount() {
    let mut r = request();
    r.incoming_amount_msat = Msat(r.incoming_amount_msat.0 - 1);
    assert_eq!(
        decide_with(&r, Some(&channel())),
        Decision::Fail(FailureMessage::FeeInsufficient {
            htlc_msat: r.incoming_amount_msat,
            channel_update: vec![]
        })
    );
    // Incoming below outgoing is the same failure, never an underflow.
    r.incoming_amount_msat = Msat(10);
    assert_eq!(code(&decide_with(&r, Some(&channel()))), 0x100c);
}

#[test]
fn cltv_delta_one_short_is_incorrect_cltv_expiry() {
    let mut r = request();
    r.incoming_cltv_expiry -= 1;
    assert_eq!(
        decide_with(&r, Some(&channel())),
        Decision::Fail(FailureMessage::IncorrectCltvExpiry {
            cltv_expiry: r.outgoing_cltv_value,
            channel_update: vec![]
        })
    );
    // An incoming expiry below the outgoing one is the same failure.
    r.incoming_cltv_expiry = r.outgoing_cltv_value - 5;
    assert_eq!(code(&decide_with(&r, Some(&channel()))), 0x100d);
}

#[test]
fn expiry_too_soon_at_the_limit() {
    let mut r = request();
    r.outgoing_cltv_value = HEIGHT + DEFAULT_MIN_OUTGOING_CLTV_BLOCKS - 1;
    r.incoming_cltv_expiry = r.outgoing_cltv_value + 40;
    assert_eq!(code(&decide_with(&r, Some(&channel()))), 0x100e);
    r.outgoing_cltv_value += 1;
    r.incoming_cltv_expiry += 1;
    assert!(matches!(
        decide_with(&r, Some(&channel())),
        Decision::Forward { .. }
    ));
}

#[test]
fn disabled_channel() {
    let mut c = channel();
    c.disabled = true;
    assert_eq!(
        decide_with(&request(), Some(&c)),
        Decision::Fail(FailureMessage::ChannelDisabled {
            disabled_flags: 0,
            channel_update: vec![]
        })
    );
}

#[test]
fn expiry_too_far() {
    let mut r = request();
    r.incoming_cltv_expiry = HEIGHT + DEFAULT_MAX_INCOMING_CLTV_BLOCKS + 1;
    r.outgoing_cltv_value = r.incoming_cltv_expiry - 40;
    assert_eq!(
        decide_with(&r, Some(&channel())),
        Decision::Fail(FailureMessage::ExpiryTooFar)
    );
}

#[test]
fn no_liquidity_or_slots_is_temporary() {
    let mut c = channel();
    c.available_msat = Msat(999_999);
    assert_eq!(code(&decide_with(&request(), Some(&c))), 0x1007);
    let mut c = channel();
    c.free_htlc_slots = 0;
    assert_eq!(code(&decide_with(&request(), Some(&c))), 0x1007);
}

#[test]
fn fee_failure_wins_over_liquidity() {
    let mut c = channel();
    c.available_msat = Msat(0);
    let mut r = request();
    r.incoming_amount_msat = r.amt_to_forward;
    assert_eq!(code(&decide_with(&r, Some(&c))), 0x100c);
}

#[test]
fn previous_policy_is_honoured_during_grace_only() {
    let mut c = channel();
    let raised = Policy {
        fee_base_msat: 5_000,
        cltv_expiry_delta: 80,
        ..policy()
    };
    c.policy.update(raised, NOW - 10);
    let r = request(); // pays the old fee and delta exactly
    assert!(matches!(
        decide_with(&r, Some(&c)),
        Decision::Forward { .. }
    ));
    let later = NOW - 10 + DEFAULT_POLICY_GRACE_SECS;
    assert_eq!(
        code(&decide(&r, Some(&c), HEIGHT, later, &Limits::default())),
        0x100c
    );
    // Updating to the same policy does not restart the grace period.
    let before = c.policy;
    c.policy.update(raised, NOW);
    assert_eq!(c.policy, before);
}

#[test]
fn blinded_failures_become_invalid_onion_blinding() {
    let sha = [9u8; 32];
    let mut r = request();
    r.blinded = Some(Blinded {
        introduction_point: false,
        sha256_of_onion: sha,
    });
    assert_eq!(
        decide_with(&r, None),
        Decision::FailMalformed {
            failure_code: INVALID_ONION_BLINDING,
            sha256_of_onion: sha
        }
    );
    r.blinded = Some(Blinded {
        introduction_point: true,
        sha256_of_onion: sha,
    });
    assert_eq!(
        decide_with(&r, None),
        Decision::Fail(FailureMessage::InvalidOnionBlinding {
            sha256_of_onion: sha
        })
    );
    assert_eq!(INVALID_ONION_BLINDING, 0xc018);
}

#[test]
fn blinded_forward_skips_our_fee_policy() {
    // The relay parameters already fixed the amounts: a smaller fee than our policy is fine.
    let mut r = request();
    r.incoming_amount_msat = Msat(r.amt_to_forward.0 + 1);
    r.incoming_cltv_expiry = r.outgoing_cltv_value + 1;
    r.blinded = Some(Blinded {
        introduction_point: true,
        sha256_of_onion: [0; 32],
    });
    assert!(matches!(
        decide_with(&r, Some(&channel())),
        Decision::Forward { .. }
    ));
}

/// BOLT 7 "Routing Example": B->C charges base 100 msat and 1000 millionths; forwarding
/// 4,999,999 msat needs 100 + 4,999 = 5,099 msat of fee (the spec's own arithmetic).
#[test]
fn bolt7_example_fee() {
    let p = Policy {
        fee_base_msat: 100,
        fee_proportional_millionths: 1000,
        ..policy()
    };
    assert_eq!(p.fee_msat(Msat(4_999_999)), Some(Msat(5_099)));
    assert_eq!(p.fee_msat(Msat(0)), Some(Msat(100)));
    let max = Policy {
        fee_base_msat: u32::MAX,
        fee_proportional_millionths: u32::MAX,
        ..policy()
    };
    assert_eq!(
        max.fee_msat(Msat(u64::MAX)),
        None,
        "overflow is reported, never wrapped"
    );
}

proptest! {
    /// Whatever the amounts, a forward never pays out more than came in, never gives less CLTV
    /// room than the policy asks, and respects liquidity.
    #[test]
    fn forwards_respect_policy(
        incoming in 0u64..10_000_000_000,
        outgoing in 0u64..10_000_000_000,
        in_cltv in HEIGHT..HEIGHT + 3000,
        out_cltv in HEIGHT..HEIGHT + 3000,
        available in 0u64..10_000_000_000,
    ) {
        let mut c = channel();
        c.available_msat = Msat(available);
        let r = Request {
            incoming_amount_msat: Msat(incoming),
            incoming_cltv_expiry: in_cltv,
            short_channel_id: SCID,
            amt_to_forward: Msat(outgoing),
            outgoing_cltv_value: out_cltv,
            blinded: None,
        };
        if let Decision::Forward { amount_msat, cltv_expiry, fee_msat, .. } = decide_with(&r, Some(&c)) {
            prop_assert_eq!(amount_msat.0 + fee_msat.0, incoming);
            prop_assert!(fee_msat >= policy().fee_msat(amount_msat).unwrap());
            prop_assert!(in_cltv - cltv_expiry >= 40);
            prop_assert!(amount_msat.0 <= available);
            prop_assert!(cltv_expiry >= HEIGHT + DEFAULT_MIN_OUTGOING_CLTV_BLOCKS);
        }
    }
}
