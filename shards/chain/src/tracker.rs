//! The header window and the walk that reconciles it with a new tip.

use std::collections::VecDeque;

/// A block hash (the node's byte order does not matter here: hashes are only compared).
pub type BlockHash = [u8; 32];

/// What the tracker needs of a block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The block's hash.
    pub hash: BlockHash,
    /// Its parent's hash.
    pub prev: BlockHash,
    /// Its height.
    pub height: u32,
}

/// A change of the best chain, in the order it is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEvent {
    /// The block left the best chain (a reorg): what it confirmed is unconfirmed again.
    Disconnected(Header),
    /// The block joined the best chain.
    Connected(Header),
}

/// Why an update could not be applied (the window is unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError<E> {
    /// Fetching a header failed.
    Fetch(E),
    /// A header does not chain: its height is not its parent's plus one, or the node
    /// answered with another block than the one asked for.
    Inconsistent(String),
}

/// Default window: 144 blocks (a day), far deeper than any reorg seen on mainnet.
pub const DEFAULT_WINDOW: usize = 144;

/// The most recent headers of the best chain, oldest first, contiguous.
#[derive(Debug, Clone)]
pub struct Tracker {
    window: VecDeque<Header>,
    max: usize,
}

impl Tracker {
    /// An empty tracker keeping at most `max` headers (at least 2).
    pub fn new(max: usize) -> Tracker {
        Tracker {
            window: VecDeque::new(),
            max: max.max(2),
        }
    }

    /// The best block known.
    pub fn tip(&self) -> Option<&Header> {
        self.window.back()
    }

    /// Its height.
    pub fn height(&self) -> Option<u32> {
        self.tip().map(|h| h.height)
    }

    /// Moves to the node's best block `tip`, fetching the headers it needs with `header_of`,
    /// and appends what changed to `events`: the blocks that left the best chain from the top
    /// down, then those that joined it from the bottom up. At most the window's size of blocks
    /// are reported connected: after a longer absence the older ones are skipped (the first
    /// event then connects a block whose parent was never reported), though every header down
    /// to the window is fetched to tell a plain absence from a reorg. A reorg deeper than the
    /// window disconnects every block the window holds. On an error nothing changes and no
    /// event is appended.
    pub fn update<E>(
        &mut self,
        tip: Header,
        mut header_of: impl FnMut(&BlockHash) -> Result<Header, E>,
        events: &mut Vec<ChainEvent>,
    ) -> Result<(), UpdateError<E>> {
        if self.tip().is_some_and(|t| t.hash == tip.hash) {
            return Ok(());
        }
        // Walk back from the new tip until a block of the window (the fork point), or below
        // the window's oldest block (a reorg deeper than the window). Only the top `max`
        // headers of the walk are kept to be reported: after a long absence the older ones are
        // skipped, but the walk still goes down to the window to tell a reorg from a jump.
        // The node went back to a block we hold (`invalidateblock`): what is above it leaves,
        // nothing joins.
        if let Some(i) = self.position(&tip.hash, Some(tip.height)) {
            while self.window.len() > i + 1 {
                let gone = self.window.pop_back().expect("longer than i + 1");
                events.push(ChainEvent::Disconnected(gone));
            }
            return Ok(());
        }
        let floor = self.window.front().map(|h| h.height);
        let mut branch = VecDeque::from([tip]);
        let mut lowest = tip;
        let fork = loop {
            if let Some(i) = self.position(&lowest.prev, lowest.height.checked_sub(1)) {
                break Some(i);
            }
            let below_window = floor.is_none_or(|f| lowest.height <= f);
            if below_window || lowest.height == 0 {
                break None;
            }
            let parent = header_of(&lowest.prev).map_err(UpdateError::Fetch)?;
            if parent.hash != lowest.prev || parent.height.checked_add(1) != Some(lowest.height) {
                return Err(UpdateError::Inconsistent(format!(
                    "block at height {} does not follow its parent (asked {}, got height {})",
                    lowest.height,
                    hex(&lowest.prev),
                    parent.height
                )));
            }
            if branch.len() < self.max {
                branch.push_back(parent);
            }
            lowest = parent;
        };
        // Above the fork point everything leaves, top down (all of it without a fork point).
        let keep = fork.map_or(0, |i| i + 1);
        while self.window.len() > keep {
            let gone = self.window.pop_back().expect("longer than keep");
            events.push(ChainEvent::Disconnected(gone));
        }
        for header in branch.into_iter().rev() {
            self.window.push_back(header);
            events.push(ChainEvent::Connected(header));
        }
        while self.window.len() > self.max {
            self.window.pop_front();
        }
        Ok(())
    }

    /// Where the window holds `hash` at `height`.
    fn position(&self, hash: &BlockHash, height: Option<u32>) -> Option<usize> {
        let height = height?;
        let first = self.window.front()?.height;
        let i = usize::try_from(height.checked_sub(first)?).ok()?;
        self.window.get(i).filter(|h| &h.hash == hash).map(|_| i)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
