//! Where each record of a stream sits in the `(updatedAt, id)` order, and
//! which records a page covers, without a list of the records.
//!
//! Base record `i` was updated at `T0 + i ms`, except that every 50th one
//! shares its predecessor's instant (ties, as a real source has them), so
//! the base records are sorted by `i`. A change gives a record a new
//! revision, updated after any base record can be: changed records form the
//! end of the order, in the order they were changed, and their base
//! positions are skipped. Ids carry `i` zero-padded, so comparing
//! `(updatedAt, i)` is comparing `(updatedAt, id)`.
//!
//! A page costs O(log n + page size) for n records; memory grows with the
//! changed and the malformed records only.

use std::collections::{HashMap, HashSet};

use super::MAX_RECORDS;

/// 2026-01-01T00:00:00.000Z, when base record 0 was last updated.
pub(crate) const T0_MS: i64 = 1_767_225_600_000;
/// Changed records are updated from here on: after every base record of
/// the largest stream, so they stay at the end whatever the volume.
const CHANGED_FROM_MS: i64 = T0_MS + MAX_RECORDS as i64;
/// Record `i` with `i % TIE_EVERY == 1` shares record `i - 1`'s instant.
const TIE_EVERY: u64 = 50;

/// When base record `index` (revision 0) was last updated, in milliseconds
/// since the Unix epoch.
pub(crate) fn base_updated_at(index: u64) -> i64 {
    T0_MS + (index - u64::from(index % TIE_EVERY == 1)) as i64
}

/// A place in the order: that of the record `index` updated at
/// `updated_at`. A cursor carries the last one of its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub updated_at: i64,
    pub index: u64,
}

/// One record of a page: enough to generate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub index: u64,
    /// 0 for a base record, then one more per change.
    pub revision: u32,
    pub updated_at: i64,
    pub malformed: bool,
}

/// Which records a request asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Records updated at or after this instant (ms since the epoch).
    pub since: i64,
    /// Records after this position (the request's cursor).
    pub after: Option<Position>,
    /// Records of the window before the page (a page number, SCIM's
    /// `startIndex`).
    pub skip: u64,
    pub take: u64,
}

#[derive(Debug)]
pub(crate) struct Page {
    pub entries: Vec<Entry>,
    /// Records in the window, the skipped ones included (SCIM's
    /// `totalResults`).
    pub total: u64,
    /// Whether records of the window follow the page.
    pub more: bool,
}

/// One stream's records: how many, which were changed, which are to be
/// served malformed.
#[derive(Debug)]
pub(crate) struct Dataset {
    records: u64,
    /// The revision and instant of every changed record, by index.
    changed: HashMap<u64, Change>,
    /// The changed indices, ascending: base positions to skip.
    left: Vec<u64>,
    /// The changed records where they now sit, ascending.
    moved: Vec<Position>,
    /// Where the next change starts (modulo the records).
    next_change: u64,
    /// Changes so far: the next one is updated at `CHANGED_FROM_MS` plus
    /// this, later than all before it.
    changes_made: u64,
    malformed: HashSet<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Change {
    revision: u32,
    updated_at: i64,
}

/// A control request the dataset cannot follow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DatasetError {
    #[error("records must be at most {MAX_RECORDS}")]
    TooManyRecords,
    #[error("count must be from 1 to the stream's {records} records")]
    ChangeCount { records: u64 },
    #[error("index {index} is past the stream's {records} records")]
    PastTheEnd { index: u64, records: u64 },
}

impl Dataset {
    /// `records` base records, none changed or malformed. At most
    /// `MAX_RECORDS` (the configuration caps it).
    pub(crate) fn new(records: u64) -> Self {
        Self {
            records: records.min(MAX_RECORDS),
            changed: HashMap::new(),
            left: Vec::new(),
            moved: Vec::new(),
            next_change: 0,
            changes_made: 0,
            malformed: HashSet::new(),
        }
    }

    /// A new volume. Changes and malformed marks of records that remain
    /// are kept.
    pub(crate) fn set_records(&mut self, records: u64) -> Result<(), DatasetError> {
        if records > MAX_RECORDS {
            return Err(DatasetError::TooManyRecords);
        }
        self.records = records;
        self.changed.retain(|&index, _| index < records);
        self.malformed.retain(|&index| index < records);
        self.reindex();
        Ok(())
    }

    /// Gives the next `count` records (from index 0 on, wrapping around) a
    /// new revision, each updated later than every record so far.
    pub(crate) fn change(&mut self, count: u64) -> Result<(), DatasetError> {
        if count == 0 || count > self.records {
            return Err(DatasetError::ChangeCount {
                records: self.records,
            });
        }
        for _ in 0..count {
            let index = self.next_change % self.records;
            self.next_change = index + 1;
            let revision = self.changed.get(&index).map_or(1, |c| c.revision + 1);
            let updated_at = CHANGED_FROM_MS + self.changes_made as i64;
            self.changes_made += 1;
            self.changed.insert(
                index,
                Change {
                    revision,
                    updated_at,
                },
            );
        }
        self.reindex();
        Ok(())
    }

    /// Serves these records malformed from now on; all or none of them.
    pub(crate) fn mark_malformed(&mut self, indices: &[u64]) -> Result<(), DatasetError> {
        if let Some(&index) = indices.iter().find(|&&index| index >= self.records) {
            return Err(DatasetError::PastTheEnd {
                index,
                records: self.records,
            });
        }
        self.malformed.extend(indices);
        Ok(())
    }

    /// The records of `window`, in order.
    pub(crate) fn page(&self, window: &Window) -> Page {
        let in_window = |at: Position| {
            at.updated_at >= window.since && window.after.is_none_or(|after| at > after)
        };
        // Base positions ascend with the index, so the window starts at a
        // base index found by bisection; the same for the changed ones.
        let first_base = first(0, self.records, |index| {
            in_window(Position {
                updated_at: base_updated_at(index),
                index,
            })
        });
        let first_moved = self.moved.partition_point(|&at| !in_window(at));
        let kept_before = self.kept_below(first_base);
        let base = self.kept_below(self.records) - kept_before;
        let total = base + (self.moved.len() - first_moved) as u64;

        let start = window.skip.min(total);
        let end = start.saturating_add(window.take).min(total);
        let mut entries = Vec::with_capacity((end - start) as usize);
        if start < base {
            let mut index = self.kept_at(kept_before + start);
            let mut skipped = self.left.partition_point(|&left| left < index);
            for _ in start..end.min(base) {
                while self.left.get(skipped) == Some(&index) {
                    skipped += 1;
                    index += 1;
                }
                entries.push(Entry {
                    index,
                    revision: 0,
                    updated_at: base_updated_at(index),
                    malformed: self.malformed.contains(&index),
                });
                index += 1;
            }
        }
        let moved = first_moved + (start.max(base) - base) as usize
            ..first_moved + (end.max(base) - base) as usize;
        entries.extend(self.moved[moved].iter().map(|at| Entry {
            index: at.index,
            revision: self.changed[&at.index].revision,
            updated_at: at.updated_at,
            malformed: self.malformed.contains(&at.index),
        }));
        Page {
            entries,
            total,
            more: end < total,
        }
    }

    /// How many base records below `index` are still at their base position.
    fn kept_below(&self, index: u64) -> u64 {
        index - self.left.partition_point(|&left| left < index) as u64
    }

    /// The index of the `n`th (from 0) base record still at its position.
    fn kept_at(&self, n: u64) -> u64 {
        first(0, self.records, |index| self.kept_below(index + 1) > n)
    }

    fn reindex(&mut self) {
        self.left = self.changed.keys().copied().collect();
        self.left.sort_unstable();
        self.moved = self
            .changed
            .iter()
            .map(|(&index, change)| Position {
                updated_at: change.updated_at,
                index,
            })
            .collect();
        self.moved.sort_unstable();
    }
}

/// The first `i` in `from..to` for which `holds(i)`, or `to`; `holds` is
/// false up to some `i` and true from there on.
fn first(mut from: u64, mut to: u64, holds: impl Fn(u64) -> bool) -> u64 {
    while from < to {
        let middle = from + (to - from) / 2;
        if holds(middle) {
            to = middle;
        } else {
            from = middle + 1;
        }
    }
    from
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    fn everything() -> Window {
        Window {
            since: i64::MIN,
            after: None,
            skip: 0,
            take: u64::MAX,
        }
    }

    fn indices(page: &Page) -> Vec<u64> {
        page.entries.iter().map(|entry| entry.index).collect()
    }

    /// The order the contract describes, materialised: what `page` must
    /// answer without materialising it.
    fn model(dataset: &Dataset, window: &Window) -> (Vec<Entry>, u64) {
        let mut all: Vec<Entry> = (0..dataset.records)
            .map(|index| match dataset.changed.get(&index) {
                Some(change) => Entry {
                    index,
                    revision: change.revision,
                    updated_at: change.updated_at,
                    malformed: dataset.malformed.contains(&index),
                },
                None => Entry {
                    index,
                    revision: 0,
                    updated_at: base_updated_at(index),
                    malformed: dataset.malformed.contains(&index),
                },
            })
            .filter(|entry| {
                let at = Position {
                    updated_at: entry.updated_at,
                    index: entry.index,
                };
                entry.updated_at >= window.since && window.after.is_none_or(|after| at > after)
            })
            .collect();
        all.sort_by_key(|entry| (entry.updated_at, entry.index));
        let total = all.len() as u64;
        let page = all
            .into_iter()
            .skip(window.skip as usize)
            .take(window.take.min(1 << 20) as usize)
            .collect();
        (page, total)
    }

    #[test]
    fn base_records_ascend_with_ties_every_fiftieth() {
        let dataset = Dataset::new(120);
        let page = dataset.page(&everything());
        assert_eq!(indices(&page), (0..120).collect::<Vec<_>>());
        assert_eq!((page.total, page.more), (120, false));
        let at = |i: usize| page.entries[i].updated_at;
        assert_eq!(at(0), T0_MS);
        assert_eq!(at(1), at(0), "records 0 and 1 tie");
        assert_eq!(at(51), at(50), "records 50 and 51 tie");
        assert_eq!(at(52), at(51) + 2);
        assert!(
            page.entries
                .windows(2)
                .all(|w| w[0].updated_at <= w[1].updated_at)
        );
    }

    #[test]
    fn since_is_inclusive_so_a_tie_comes_back_whole() {
        let dataset = Dataset::new(120);
        let since = base_updated_at(51);
        let page = dataset.page(&Window {
            since,
            take: 3,
            ..everything()
        });
        assert_eq!(indices(&page), [50, 51, 52]);
        assert_eq!((page.total, page.more), (70, true));

        // A cursor on the first of a tie goes on with the second.
        let after = Position {
            updated_at: since,
            index: 50,
        };
        let page = dataset.page(&Window {
            since,
            after: Some(after),
            take: 2,
            ..everything()
        });
        assert_eq!(indices(&page), [51, 52]);
    }

    #[test]
    fn changed_records_leave_their_place_for_the_end() {
        let mut dataset = Dataset::new(10);
        dataset.change(3).unwrap();
        let page = dataset.page(&everything());
        assert_eq!(indices(&page), [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
        assert_eq!(page.entries[7].revision, 1);
        let last_base = page.entries[6].updated_at;
        assert!(page.entries[7..].iter().all(|e| e.updated_at > last_base));

        // The next change goes on from there, wrapping around; a record
        // changed again moves to the end again.
        dataset.change(8).unwrap();
        let page = dataset.page(&everything());
        assert_eq!(indices(&page), [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
        assert_eq!(page.entries[0].revision, 1);
        assert_eq!(page.entries[9].revision, 2);

        // Only the changes come back from the last instant a run saw on.
        let mut dataset = Dataset::new(10);
        let seen = dataset.page(&everything()).entries[9].updated_at;
        dataset.change(2).unwrap();
        let page = dataset.page(&Window {
            since: seen,
            ..everything()
        });
        assert_eq!(indices(&page), [9, 0, 1]);
    }

    #[test]
    fn volume_changes_keep_what_remains() {
        let mut dataset = Dataset::new(10);
        dataset.change(4).unwrap();
        dataset.mark_malformed(&[1, 8]).unwrap();
        dataset.set_records(3).unwrap();
        let page = dataset.page(&everything());
        assert_eq!(indices(&page), [0, 1, 2]);
        assert!(page.entries.iter().all(|e| e.revision == 1));
        assert_eq!(dataset.malformed, HashSet::from([1]));
        assert_eq!(
            dataset.set_records(MAX_RECORDS + 1),
            Err(DatasetError::TooManyRecords)
        );
        assert_eq!(
            dataset.change(4),
            Err(DatasetError::ChangeCount { records: 3 })
        );
        assert_eq!(
            dataset.mark_malformed(&[0, 3]),
            Err(DatasetError::PastTheEnd {
                index: 3,
                records: 3
            })
        );
        assert_eq!(dataset.malformed, HashSet::from([1]), "none marked");
    }

    /// The end of the largest stream costs what its page costs: nothing in
    /// `page` walks or allocates per record of the stream.
    #[test]
    fn a_page_at_the_end_of_the_largest_stream_is_cheap() {
        let mut dataset = Dataset::new(MAX_RECORDS);
        dataset.change(1000).unwrap();
        let started = Instant::now();
        let page = dataset.page(&Window {
            since: base_updated_at(MAX_RECORDS - 1500),
            skip: 1000,
            take: 1000,
            ..everything()
        });
        let elapsed = started.elapsed();
        assert_eq!(
            page.total, 2500,
            "1500 base records from since, 1000 changed"
        );
        assert_eq!(page.entries.len(), 1000);
        assert_eq!(page.entries[0].index, MAX_RECORDS - 500);
        assert_eq!(page.entries[499].index, MAX_RECORDS - 1);
        assert_eq!(page.entries[500].index, 0);
        assert!(page.more);
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn pages_match_the_materialised_order(
            records in 0u64..160,
            changes in proptest::collection::vec(1u64..60, 0..4),
            malformed in proptest::collection::vec(0u64..160, 0..5),
            since in proptest::option::of(0u64..200),
            after in proptest::option::of((0u64..200, 0u64..160)),
            skip in 0u64..170,
            take in 1u64..40,
        ) {
            let mut dataset = Dataset::new(records);
            for count in changes {
                let _ = dataset.change(count);
            }
            let _ = dataset.mark_malformed(&malformed);
            // Instants past the base records fall among the changed ones.
            let instant = |at: u64| if at < 100 { T0_MS + at as i64 } else { CHANGED_FROM_MS + at as i64 - 100 };
            let window = Window {
                since: since.map_or(i64::MIN, instant),
                after: after.map(|(at, index)| Position { updated_at: instant(at), index }),
                skip,
                take,
            };
            let page = dataset.page(&window);
            let (expected, total) = model(&dataset, &window);
            prop_assert_eq!(&page.entries, &expected);
            prop_assert_eq!(page.total, total);
            prop_assert_eq!(page.more, skip + take < total);
        }
    }
}
