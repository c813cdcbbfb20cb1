//! The smoke size of `benches/cycle.rs`: the measured cycle settles every HTLC, for a cycle
//! of 1 and of 30, repeatedly on the same pair of channels.

use lnhub_tx::ChannelType;
use secp256k1::Secp256k1;

mod common;
mod cycle;

#[test]
fn the_bench_cycle_settles_every_htlc() {
    let secp = Secp256k1::new();
    let agreement = common::Agreement::default_for(ChannelType::Anchors);
    let (mut a, mut b) = common::pair(&secp, 7, &agreement);
    let mut counter = 0;
    for n in [1usize, 30, 1, 30] {
        assert_eq!(cycle::run(&secp, &mut a, &mut b, n, &mut counter), 2 * n);
    }
}
