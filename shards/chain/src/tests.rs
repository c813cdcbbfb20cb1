use std::collections::HashMap;

use proptest::prelude::*;

use crate::*;

/// A scripted node: every block ever mined (any branch), by hash.
#[derive(Default)]
struct Node {
    blocks: HashMap<BlockHash, Header>,
    next_id: u64,
}

impl Node {
    /// Mines `n` blocks on top of `parent` (`None`: a genesis at height 0), returns the tips.
    fn mine(&mut self, parent: Option<Header>, n: usize) -> Vec<Header> {
        let mut out = Vec::new();
        let mut prev = parent;
        for _ in 0..n {
            self.next_id += 1;
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&self.next_id.to_be_bytes());
            let h = Header {
                hash,
                prev: prev.map_or([0xff; 32], |p| p.hash),
                height: prev.map_or(0, |p| p.height + 1),
            };
            self.blocks.insert(hash, h);
            out.push(h);
            prev = Some(h);
        }
        out
    }

    fn fetch(&self) -> impl FnMut(&BlockHash) -> Result<Header, &'static str> + '_ {
        |hash| self.blocks.get(hash).copied().ok_or("unknown block")
    }
}

fn heights(events: &[ChainEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| match e {
            ChainEvent::Connected(h) => i64::from(h.height),
            ChainEvent::Disconnected(h) => -i64::from(h.height),
        })
        .collect()
}

#[test]
fn blocks_connect_in_order_and_a_reorg_disconnects_top_down_first() {
    let mut node = Node::default();
    let main = node.mine(None, 11); // heights 0..=10
    let mut t = Tracker::new(DEFAULT_WINDOW);
    let mut ev = Vec::new();
    t.update(main[5], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![5], "a first tip alone");
    ev.clear();
    t.update(main[10], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![6, 7, 8, 9, 10]);
    ev.clear();
    t.update(main[10], node.fetch(), &mut ev).unwrap();
    assert!(ev.is_empty(), "same tip, nothing");
    // A competing branch from height 8 overtakes: 9 and 10 leave, 9', 10', 11' join.
    let fork = node.mine(Some(main[8]), 3);
    t.update(fork[2], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![-10, -9, 9, 10, 11]);
    assert_eq!(ev[0], ChainEvent::Disconnected(main[10]));
    assert_eq!(ev[2], ChainEvent::Connected(fork[0]));
    assert_eq!(t.height(), Some(11));
    // The old branch comes back (longer): the reorg undone.
    let back = node.mine(Some(main[10]), 2);
    ev.clear();
    t.update(back[1], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![-11, -10, -9, 9, 10, 11, 12]);
    // Back to a block we hold (invalidateblock of its child): the blocks above leave, and
    // nothing joins; then forward again on the same blocks.
    ev.clear();
    t.update(back[0], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![-12]);
    ev.clear();
    t.update(back[1], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![12]);
    // A tip below ours on another branch (invalidateblock): blocks leave, the lower one joins.
    let low = node.mine(Some(main[6]), 1);
    ev.clear();
    t.update(low[0], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), vec![-12, -11, -10, -9, -8, -7, 7]);
}

#[test]
fn long_absences_and_deep_reorgs_are_bounded_by_the_window() {
    let mut node = Node::default();
    let main = node.mine(None, 40);
    let mut t = Tracker::new(5);
    let mut ev = Vec::new();
    t.update(main[3], node.fetch(), &mut ev).unwrap();
    ev.clear();
    t.update(main[39], node.fetch(), &mut ev).unwrap();
    assert_eq!(
        heights(&ev),
        vec![35, 36, 37, 38, 39],
        "the last window's worth"
    );
    // A reorg deeper than the window: everything held leaves.
    let other = node.mine(Some(main[20]), 25); // tip at 45
    ev.clear();
    t.update(other[24], node.fetch(), &mut ev).unwrap();
    assert_eq!(
        heights(&ev),
        vec![-39, -38, -37, -36, -35, 41, 42, 43, 44, 45]
    );
}

#[test]
fn fetch_errors_and_inconsistent_answers_change_nothing() {
    let mut node = Node::default();
    let main = node.mine(None, 10);
    let mut t = Tracker::new(DEFAULT_WINDOW);
    let mut ev = Vec::new();
    t.update(main[2], node.fetch(), &mut ev).unwrap();
    ev.clear();
    let r = t.update(main[9], |_| Err::<Header, _>("node down"), &mut ev);
    assert_eq!(r, Err(UpdateError::Fetch("node down")));
    assert!(ev.is_empty());
    assert_eq!(t.height(), Some(2));
    // A node that answers with the wrong height.
    let r = t.update(
        main[9],
        |h| {
            let mut b = node.blocks[h];
            b.height += 1;
            Ok::<_, ()>(b)
        },
        &mut ev,
    );
    assert!(matches!(r, Err(UpdateError::Inconsistent(_))), "{r:?}");
    assert!(ev.is_empty());
    t.update(main[9], node.fetch(), &mut ev).unwrap();
    assert_eq!(heights(&ev), (3..=9).collect::<Vec<_>>());
}

#[test]
fn fee_rates_have_a_floor_and_a_fallback() {
    // 0.0002 BTC/kvB = 20 sat/vB = 5,000 sat/kw.
    assert_eq!(fee_rate(Some(0.0002), 1000), 5000);
    assert_eq!(fee_rate(None, 1000), 1000);
    assert_eq!(fee_rate(Some(-1.0), 1000), 1000);
    assert_eq!(fee_rate(Some(f64::NAN), 300), 300);
    assert_eq!(fee_rate(Some(0.000001), 1000), FEERATE_FLOOR_SAT_PER_KW);
    assert_eq!(fee_rate(None, 0), FEERATE_FLOOR_SAT_PER_KW);
}

proptest! {
    /// Whatever the sequence of tips (any branch of a random block tree), replaying the events
    /// on a list of heights gives exactly the new tip's chain (within the window), and the
    /// events never connect a block twice in a row without its disconnection.
    #[test]
    fn events_replay_to_the_best_chain(steps in prop::collection::vec((0usize..1000, 1usize..6), 1..30)) {
        let mut node = Node::default();
        let mut all = node.mine(None, 1);
        let mut t = Tracker::new(12);
        let mut chain: Vec<Header> = Vec::new();
        for (pick, n) in steps {
            let parent = all[pick % all.len()];
            let new = node.mine(Some(parent), n);
            all.extend(&new);
            let tip = *new.last().unwrap();
            let mut ev = Vec::new();
            t.update(tip, node.fetch(), &mut ev).unwrap();
            for e in ev {
                match e {
                    ChainEvent::Disconnected(h) => {
                        prop_assert_eq!(chain.pop(), Some(h));
                    }
                    ChainEvent::Connected(h) => {
                        if let Some(top) = chain.last() {
                            if top.hash != h.prev {
                                // Blocks skipped after a long jump: the list restarts.
                                chain.clear();
                            }
                        }
                        chain.push(h);
                    }
                }
            }
            prop_assert_eq!(chain.last().copied(), Some(tip));
            // Every listed block is an ancestor of the tip, in order.
            for pair in chain.windows(2) {
                prop_assert_eq!(pair[1].prev, pair[0].hash);
            }
        }
    }
}

fn txid(n: u8) -> Txid {
    [n; 32]
}

fn block(n: u8) -> BlockHash {
    let mut b = [0u8; 32];
    b[0] = n;
    b
}

fn tx(n: u8, spends: &[OutPoint]) -> TxSummary {
    TxSummary {
        txid: txid(n),
        spends: spends.to_vec(),
    }
}

fn funding(n: u8) -> OutPoint {
    OutPoint {
        txid: txid(n),
        vout: 1,
    }
}

#[test]
fn a_funding_confirms_deepens_to_its_report_depth_and_is_spent() {
    let mut w = Watcher::new();
    w.watch(
        7u8,
        Watch {
            outpoint: funding(1),
            report_depth: 3,
        },
    );
    let mut out = Vec::new();
    w.changes(100, &mut out);
    assert_eq!(
        out,
        vec![(7, Status::default())],
        "reported once when watched"
    );
    out.clear();
    w.changes(100, &mut out);
    assert!(out.is_empty(), "nothing changed");

    // Block 101 holds an unrelated tx, then the funding at index 1.
    w.block_connected(block(101), 101, &[tx(9, &[]), tx(1, &[])]);
    w.changes(101, &mut out);
    let at = Position {
        height: 101,
        block: block(101),
        tx_index: 1,
    };
    assert_eq!(
        out,
        vec![(
            7,
            Status {
                confirmed: Some(at),
                depth: 1,
                spent: None
            }
        )]
    );
    for tip in [102, 103] {
        out.clear();
        w.changes(tip, &mut out);
        assert_eq!(out[0].1.depth, tip - 100);
    }
    out.clear();
    w.changes(110, &mut out);
    assert!(out.is_empty(), "capped at the report depth: {out:?}");

    // Spent in block 111.
    w.block_connected(block(111), 111, &[tx(0, &[]), tx(5, &[funding(1)])]);
    w.changes(111, &mut out);
    let (txid_, pos, depth) = out[0].1.spent.expect("spent");
    assert_eq!(
        (txid_, pos.height, pos.tx_index, depth),
        (txid(5), 111, 1, 1)
    );
    assert!(w.is_spent(&7));

    // Spending another output of the same transaction is not a spend of ours.
    let mut other = funding(1);
    other.vout = 0;
    w.block_disconnected(block(111));
    w.block_connected(block(112), 111, &[tx(6, &[other])]);
    out.clear();
    w.changes(111, &mut out);
    assert_eq!(out[0].1.spent, None);
}

#[test]
fn a_reorg_unconfirms_the_funding_until_it_confirms_again() {
    let mut w = Watcher::new();
    w.watch(
        1u32,
        Watch {
            outpoint: funding(1),
            report_depth: 6,
        },
    );
    w.block_connected(block(10), 10, &[tx(1, &[])]);
    w.block_connected(block(11), 11, &[]);
    let mut out = Vec::new();
    w.changes(11, &mut out);
    assert_eq!(out[0].1.depth, 2);
    // Both blocks leave; the other branch does not hold the funding.
    w.block_disconnected(block(11));
    w.block_disconnected(block(10));
    w.block_connected(block(20), 10, &[]);
    w.block_connected(block(21), 11, &[]);
    w.block_connected(block(22), 12, &[]);
    out.clear();
    w.changes(12, &mut out);
    assert_eq!(out, vec![(1, Status::default())]);
    assert!(!w.is_confirmed(&1));
    // It confirms again in the next block, at another position.
    w.block_connected(block(23), 13, &[tx(8, &[]), tx(9, &[]), tx(1, &[])]);
    out.clear();
    w.changes(13, &mut out);
    let c = out[0].1.confirmed.expect("confirmed");
    assert_eq!((c.height, c.tx_index, out[0].1.depth), (13, 2, 1));
}

#[test]
fn forgotten_and_rewatched_outputs() {
    let mut w = Watcher::new();
    let watch = Watch {
        outpoint: funding(1),
        report_depth: 3,
    };
    w.watch(1u8, watch);
    w.watch(
        2u8,
        Watch {
            outpoint: funding(2),
            report_depth: 3,
        },
    );
    w.set_confirmed(
        &1,
        Position {
            height: 5,
            block: block(5),
            tx_index: 0,
        },
    );
    // Watching again keeps what is known and reports afresh.
    w.watch(1, watch);
    assert!(w.is_confirmed(&1));
    let mut out = Vec::new();
    w.changes(5, &mut out);
    out.sort_by_key(|(k, _)| *k);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1.depth, 1);
    w.forget(&1);
    assert!(!w.contains(&1));
    w.block_connected(block(6), 6, &[tx(1, &[]), tx(3, &[funding(1)])]);
    out.clear();
    w.changes(6, &mut out);
    assert!(
        out.is_empty(),
        "a forgotten output is not reported: {out:?}"
    );
    assert_eq!(w.watched().count(), 1);
}
