//! Following the best chain, sans-IO: [`Tracker`] keeps a window of the most recent block
//! headers and, given the node's new best tip and a way to fetch any header by hash, says
//! which blocks left the best chain and which joined it, in order (disconnections from the
//! top down, then connections from the bottom up), as `lightning-block-sync` does for LDK.
//! The shell (`lnhubd`'s bitcoind poller) does the fetching; everything here is pure and
//! tested against scripted chains with reorgs.
//!
//! [`Watcher`] keeps, for each funding output the shards ask about, where it confirmed and
//! what spent it, across reorgs, and says what changed at each new tip.
//!
//! [`fee_rate`] turns a node's estimate into a feerate for our transactions, with a floor
//! and a fallback for when the node has none (a fresh regtest node never has).

mod tracker;
mod watch;

pub use tracker::{BlockHash, ChainEvent, Header, Tracker, UpdateError, DEFAULT_WINDOW};
pub use watch::{OutPoint, Position, Status, TxSummary, Txid, Watch, Watcher};

/// The feerate floor (sat per 1,000 weight units): 253, the smallest rate that relays at
/// Bitcoin Core's default minimum of 1 sat/vB once rounding is accounted for (LDK and CLN use
/// the same floor).
pub const FEERATE_FLOOR_SAT_PER_KW: u32 = 253;

/// A feerate in sat per 1,000 weight units from a node's `estimatesmartfee` answer (BTC per
/// 1,000 virtual bytes, `None` when it has no estimate): at least [`FEERATE_FLOOR_SAT_PER_KW`],
/// and `fallback` when there is no estimate (or it is not a finite positive number).
pub fn fee_rate(btc_per_kvb: Option<f64>, fallback_sat_per_kw: u32) -> u32 {
    let estimated = btc_per_kvb
        .filter(|r| r.is_finite() && *r > 0.0)
        // BTC/kvB -> sat/kvB (x 1e8) -> sat/kw (a vbyte is 4 weight units: / 4).
        .map(|r| (r * 1e8 / 4.0).min(f64::from(u32::MAX)) as u32);
    estimated
        .unwrap_or(fallback_sat_per_kw)
        .max(FEERATE_FLOOR_SAT_PER_KW)
}

#[cfg(test)]
mod tests;
