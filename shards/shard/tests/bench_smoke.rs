//! The smoke sizes of `benches/turn.rs`: the recorded exchange checks out end to end (the
//! payees accept the hub's `commitment_signed` over every forwarded HTLC), and the measured
//! turns, replayed into fresh hubs twice, send what they sent when recorded.

mod support;
mod turn;

#[test]
fn the_bench_turns_forward_every_htlc() {
    for k in [1usize, 100] {
        let fixture = turn::Fixture::new(k);
        for _ in 0..2 {
            let (mut hub, inputs) = fixture.before_commit();
            hub.turn(inputs);
            for (i, payer) in fixture.payers.iter().enumerate() {
                let expected = if i < k { (0, 1, 1) } else { (0, 0, 0) };
                assert_eq!(hub.sent_to(payer), expected, "k {k}, payer {i}");
            }
            let (mut hub, inputs) = fixture.before_forward();
            hub.turn(inputs);
            assert_eq!(hub.shard.counters().forwards_total, k as u64);
            let mut added = 0;
            for payee in &fixture.payees {
                let (adds, commits, revokes) = hub.sent_to(payee);
                assert_eq!((commits, revokes), (usize::from(adds > 0), 0));
                added += adds;
            }
            assert_eq!(added, k);
        }
    }
}
