//! lnhub's Prometheus metrics, in one place: every metric's name, type, help, labels and
//! bucket layout ([`catalogue`]), the fixed-bucket [`Histogram`] the shards and the store keep
//! in plain integers, the bounded label values ([`labels`]: BOLT 4 failure names, message
//! types), and the text exposition format ([`Exposition`]).
//!
//! Why the values are not kept in a metrics recorder: the forwarding path must not take a
//! lock, touch a shared atomic or allocate to publish. Each shard counts in its own plain
//! integers and the daemon folds every shard's figures when Prometheus scrapes (a report
//! asked of each shard between two of its turns), so the recorder would only ever be handed
//! finished totals. The recorders of the `metrics` ecosystem cannot take a histogram's bucket
//! counts that way (only single observations), so the exposition is written here: the format
//! (Prometheus text format 0.0.4) is a few rules, and `promtool check metrics` checks the
//! result in the daemon's tests.
//!
//! Naming follows Prometheus practice: the `lnhub_` prefix, base units in the name (seconds,
//! bytes; msat where Lightning's own unit is msat), `_total` on counters only, and label
//! values from bounded sets (a peer cannot mint a new series).

pub mod catalogue;
mod exposition;
pub mod histogram;
pub mod labels;

pub use catalogue::{Kind, Metric};
pub use exposition::{Exposition, Family, CONTENT_TYPE};
pub use histogram::{Histogram, Layout, MAX_BUCKETS};

#[cfg(test)]
mod tests;
