//! What both async UDFs do with a batch: ask once per distinct key, many at
//! a time, and give every row its key's answer in row order.

use std::hash::Hash;

use datafusion::common::HashMap;
use datafusion::common::hash_map::Entry;

use futures::StreamExt;

/// The answers to a batch's distinct keys, and which one each row gets.
pub(crate) struct Distinct<V> {
    /// One answer per distinct key, in order of first appearance.
    answers: Vec<V>,
    /// Per row: the index of its answer and whether it is the row that
    /// asked (the first with that key); `None` for a row without a key.
    rows: Vec<Option<(usize, bool)>>,
}

impl<V> Distinct<V> {
    /// Each row's answer, and whether it is the row that asked.
    pub(crate) fn rows(&self) -> impl Iterator<Item = Option<(&V, bool)>> {
        self.rows
            .iter()
            .map(|row| row.map(|(at, first)| (&self.answers[at], first)))
    }
}

/// Calls `ask(first_row, key)` once per distinct key of `keys` (one per
/// row; `None` asks nothing), at most `concurrency` at a time.
pub(crate) async fn ask_distinct<K, V, Fut>(
    keys: impl Iterator<Item = Option<K>>,
    concurrency: usize,
    ask: impl Fn(usize, K) -> Fut,
) -> Distinct<V>
where
    K: Hash + Eq + Clone,
    Fut: Future<Output = V>,
{
    // foldhash (DataFusion's own for grouping), seeded at random per map:
    // std's SipHash over a lead's six fields was 2.4% of a cached lookup
    // in serve. A map holds one batch's keys, never more.
    let mut index: HashMap<K, usize> = HashMap::with_capacity(keys.size_hint().0);
    let mut unique: Vec<(usize, K)> = Vec::new();
    let rows = keys
        .enumerate()
        .map(|(row, key)| {
            Some(match index.entry(key?) {
                Entry::Occupied(e) => (*e.get(), false),
                Entry::Vacant(e) => {
                    unique.push((row, e.key().clone()));
                    e.insert(unique.len() - 1);
                    (unique.len() - 1, true)
                }
            })
        })
        .collect();
    drop(index);

    let mut answers: Vec<Option<V>> = std::iter::repeat_with(|| None).take(unique.len()).collect();
    let mut done = futures::stream::iter(unique.into_iter().enumerate())
        .map(|(i, (row, key))| {
            let answer = ask(row, key);
            async move { (i, answer.await) }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((i, answer)) = done.next().await {
        answers[i] = Some(answer);
    }
    Distinct {
        answers: answers
            .into_iter()
            .map(|a| a.expect("every distinct key asked"))
            .collect(),
        rows,
    }
}
