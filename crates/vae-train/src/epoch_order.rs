//! Which training examples each step sees: every epoch a permutation of the training set drawn
//! from the seed and the epoch number, cut into global batches of `training.batch_size`; with N
//! data-parallel ranks each global batch is cut into N equal rank batches, so the N ranks
//! together take exactly the steps one process would take (see [`EpochOrder::indices`]).
//!
//! The order depends only on (seed, epoch), never on how the run was interrupted: a resumed
//! run sees the epochs an uninterrupted one would.

use std::sync::{Arc, RwLock};

use burn::data::dataset::Dataset;

/// The permutation of each epoch and this rank's part of it (see the module documentation).
#[derive(Debug)]
pub struct EpochOrder {
    examples: usize,
    seed: u64,
    batch_size: usize,
    nodes: usize,
    rank: usize,
    /// This rank's indices into the training set for the current epoch.
    current: RwLock<Arc<Vec<usize>>>,
}

impl EpochOrder {
    /// The order of `examples` training examples for rank `rank` of `nodes`, with global batches
    /// of `batch_size` (a multiple of `nodes`), starting at epoch 1.
    pub fn new(examples: usize, seed: u64, batch_size: usize, nodes: usize, rank: usize) -> Self {
        let order = Self {
            examples,
            seed,
            batch_size,
            nodes,
            rank,
            current: RwLock::new(Arc::new(Vec::new())),
        };
        order.start_epoch(1);
        order
    }

    /// Switches to epoch `epoch`'s order (call before iterating the epoch's batches).
    pub fn start_epoch(&self, epoch: usize) {
        let indices = Self::indices(
            self.examples,
            self.seed,
            epoch,
            self.batch_size,
            self.nodes,
            self.rank,
        );
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(indices);
    }

    /// Examples this rank sees per epoch: ⌊examples / nodes⌋.
    pub fn len(&self) -> usize {
        self.examples / self.nodes
    }

    /// Whether this rank sees no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self, position: usize) -> Option<usize> {
        let current = match self.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        current.get(position).copied()
    }

    /// Rank `rank`'s training-set indices for `epoch`, in step order, for global batches of
    /// `batch_size` (G) over `nodes` (N) ranks:
    ///
    /// * π = a Fisher–Yates permutation of `0..examples` driven by SplitMix64 from
    ///   (`seed`, `epoch`): the same on every rank and platform, different each epoch;
    /// * the first L' = N·⌊examples / N⌋ positions of π are cut into global batches of G (the
    ///   last one may be shorter; L' and G are multiples of N, so it splits evenly too);
    /// * rank r takes the r-th of the N equal parts of every global batch.
    ///
    /// So for N = 1 this is π itself, and the N ranks' k-th batches together are exactly the
    /// k-th batch one process takes with batch G: averaging their mean gradients gives its mean
    /// gradient.
    pub fn indices(
        examples: usize,
        seed: u64,
        epoch: usize,
        batch_size: usize,
        nodes: usize,
        rank: usize,
    ) -> Vec<usize> {
        let permutation = permutation(examples, seed, epoch);
        let nodes = nodes.max(1);
        let used = examples / nodes * nodes;
        let global = batch_size.max(1);
        let mut mine = Vec::with_capacity(used / nodes);
        let mut start = 0;
        while start < used {
            let size = global.min(used - start);
            let part = size / nodes;
            let from = start + rank * part;
            mine.extend_from_slice(&permutation[from..from + part]);
            start += size;
        }
        mine
    }
}

/// A permutation of `0..n` from (`seed`, `epoch`): SplitMix64-driven Fisher–Yates.
fn permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..n).rev() {
        // Multiply-shift maps the 64-bit draw onto 0..=i without modulo bias worth noticing.
        let j = ((next() as u128 * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// The training set seen through an [`EpochOrder`]: item `k` is the epoch's `k`-th example
/// for this rank. Built without the data loader's own shuffling.
pub struct OrderedDataset<I> {
    data: Arc<dyn Dataset<I>>,
    order: Arc<EpochOrder>,
}

impl<I> OrderedDataset<I> {
    /// `data` in the order `order` gives.
    pub fn new(data: Arc<dyn Dataset<I>>, order: Arc<EpochOrder>) -> Self {
        Self { data, order }
    }
}

impl<I: Send + Sync> Dataset<I> for OrderedDataset<I> {
    fn get(&self, index: usize) -> Option<I> {
        self.data.get(self.order.index(index)?)
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_split_each_global_batch_of_one_permutation_per_epoch() {
        let (examples, seed, batch) = (100, 7, 12);
        for epoch in 1..4 {
            let single = EpochOrder::indices(examples, seed, epoch, batch, 1, 0);
            let mut sorted = single.clone();
            sorted.sort();
            assert_eq!(sorted, (0..examples).collect::<Vec<_>>(), "a permutation");
            for nodes in [2, 3, 4] {
                let used = examples / nodes * nodes;
                let ranks: Vec<Vec<usize>> = (0..nodes)
                    .map(|r| EpochOrder::indices(examples, seed, epoch, batch, nodes, r))
                    .collect();
                assert!(ranks.iter().all(|r| r.len() == examples / nodes));
                // The ranks' k-th batches (an equal part of each global batch) are, in rank
                // order, the single process's k-th batch of the first `used` positions.
                let mut together = Vec::new();
                let (mut start, mut cursor) = (0, 0);
                while start < used {
                    let part = batch.min(used - start) / nodes;
                    for rank in &ranks {
                        together.extend_from_slice(&rank[cursor..cursor + part]);
                    }
                    (start, cursor) = (start + part * nodes, cursor + part);
                }
                assert_eq!(together, single[..used], "{nodes} ranks, epoch {epoch}");
            }
        }
        assert_ne!(
            EpochOrder::indices(examples, seed, 1, batch, 1, 0),
            EpochOrder::indices(examples, seed, 2, batch, 1, 0),
            "a new order each epoch"
        );
        assert_ne!(
            EpochOrder::indices(examples, seed, 1, batch, 1, 0),
            EpochOrder::indices(examples, seed + 1, 1, batch, 1, 0),
            "a new order for another seed"
        );
    }

    #[test]
    fn the_dataset_follows_the_current_epoch() {
        let data: Arc<dyn Dataset<usize>> =
            Arc::new(burn::data::dataset::InMemDataset::new((0..10).collect()));
        let order = Arc::new(EpochOrder::new(10, 1, 4, 2, 1));
        let view = OrderedDataset::new(data, order.clone());
        assert_eq!(view.len(), 5);
        let first: Vec<usize> = (0..5).filter_map(|i| view.get(i)).collect();
        assert_eq!(first, EpochOrder::indices(10, 1, 1, 4, 2, 1));
        order.start_epoch(2);
        let second: Vec<usize> = (0..5).filter_map(|i| view.get(i)).collect();
        assert_eq!(second, EpochOrder::indices(10, 1, 2, 4, 2, 1));
        assert_eq!(view.get(5), None);
    }
}
