//! A turn's writes as one owned value: puts and deletes over named tables, every key and value
//! in one reused buffer, so a shard encodes on its own thread into memory it keeps between
//! turns and hands the store nothing that borrows shard state.

use std::ops::Range;

/// The store's tables (LMDB named databases). See the crate docs for their keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Layout version and node-wide values.
    Meta,
    /// Channels in normal operation or closing: what changes with every commitment round.
    Channels,
    /// What never changes about a channel in normal operation or closing (id, funding, keys,
    /// limits, secrets), written once with its first record in `channels` and deleted when it
    /// is retired.
    ChannelStatics,
    /// Channels in establishment (commitment 0 signed both ways).
    Openings,
    /// Forwards in flight, by outgoing HTLC.
    Links,
    /// What never changes about an HTLC in a channel's books (amount, hash, expiry, onion),
    /// written once when the HTLC enters them and deleted when it leaves.
    Htlcs,
    /// The onion replay set: one key per onion seen, until its expiry height passes.
    Replays,
    /// The forwarding log: one record per incoming HTLC the hub forwarded or failed.
    Forwards,
    /// The forwarding log by time of resolution, for pruning by age.
    ForwardsByTime,
    /// Channels retired after their closing transaction was deep enough: a summary each.
    Closed,
    /// The on-chain wallet's change sets, in order.
    Wallet,
}

impl Table {
    /// Every table, in the order of declaration (the store opens them all and indexes them by
    /// `Table as usize`).
    pub const ALL: [Table; 11] = [
        Table::Meta,
        Table::Channels,
        Table::ChannelStatics,
        Table::Openings,
        Table::Links,
        Table::Htlcs,
        Table::Replays,
        Table::Forwards,
        Table::ForwardsByTime,
        Table::Closed,
        Table::Wallet,
    ];

    /// The table's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Channels => "channels",
            Table::ChannelStatics => "channel_statics",
            Table::Openings => "openings",
            Table::Links => "links",
            Table::Htlcs => "htlcs",
            Table::Replays => "replays",
            Table::Forwards => "forwards",
            Table::ForwardsByTime => "forwards_by_time",
            Table::Closed => "closed",
            Table::Wallet => "wallet",
        }
    }
}

/// One write of a [`Batch`]: ranges into the batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which table.
    pub table: Table,
    key: Range<usize>,
    /// `None` deletes the key.
    value: Option<Range<usize>>,
}

/// Puts and deletes to apply in order, in one transaction. [`Batch::clear`] keeps the
/// allocations, so a batch reused turn after turn allocates nothing in steady state.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    buf: Vec<u8>,
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Forgets every write, keeping the allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ops.clear();
    }

    /// Puts `key` in `table` with the value `value` appends to the buffer it is given.
    pub fn put_with(&mut self, table: Table, key: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        let k = self.buf.len();
        self.buf.extend_from_slice(key);
        let v = self.buf.len();
        value(&mut self.buf);
        self.ops.push(Op {
            table,
            key: k..v,
            value: Some(v..self.buf.len()),
        });
    }

    /// Puts `key` in `table` with `value`.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.put_with(table, key, |out| out.extend_from_slice(value));
    }

    /// Deletes `key` from `table` (a missing key is no error).
    pub fn delete(&mut self, table: Table, key: &[u8]) {
        let k = self.buf.len();
        self.buf.extend_from_slice(key);
        self.ops.push(Op {
            table,
            key: k..self.buf.len(),
            value: None,
        });
    }

    /// The writes in order: table, key, and the value (`None`: delete).
    pub fn iter(&self) -> impl Iterator<Item = (Table, &[u8], Option<&[u8]>)> + '_ {
        self.ops.iter().map(|op| {
            (
                op.table,
                &self.buf[op.key.clone()],
                op.value.clone().map(|v| &self.buf[v]),
            )
        })
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values together (what the batch asks the disk to take).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_listed_in_declaration_order_under_its_own_name() {
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
        let mut names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Table::ALL.len());
    }

    #[test]
    fn writes_come_back_in_order_and_clear_keeps_capacity() {
        let mut b = Batch::new();
        b.put(Table::Channels, b"k1", b"v1");
        b.delete(Table::Openings, b"k1");
        b.put_with(Table::Links, b"k2", |out| out.extend_from_slice(b"value"));
        let got: Vec<_> = b.iter().collect();
        assert_eq!(
            got,
            vec![
                (Table::Channels, &b"k1"[..], Some(&b"v1"[..])),
                (Table::Openings, &b"k1"[..], None),
                (Table::Links, &b"k2"[..], Some(&b"value"[..])),
            ]
        );
        assert_eq!((b.len(), b.bytes()), (3, 2 + 2 + 2 + 2 + 5));
        let cap = b.buf.capacity();
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.buf.capacity(), cap);
    }
}
