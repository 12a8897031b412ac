//! Scan results and scan direction.

/// The order a scan walks keys in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending key order.
    #[default]
    Forward,
    /// Descending key order.
    Reverse,
}

/// One page of a scan: at most `limit` items, in scan order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more items matched beyond the limit. To continue, scan again
    /// from just after the last item's key.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Collects at most `limit` items from `iter`, noting whether more remain.
    pub(crate) fn collect(mut iter: impl Iterator<Item = T>, limit: usize) -> Page<T> {
        let mut items = Vec::with_capacity(limit.min(1024));
        while items.len() < limit {
            match iter.next() {
                Some(item) => items.push(item),
                None => {
                    return Page {
                        items,
                        has_more: false,
                    };
                }
            }
        }
        Page {
            has_more: iter.next().is_some(),
            items,
        }
    }

    /// A page with no items and nothing more.
    pub(crate) fn empty() -> Page<T> {
        Page {
            items: Vec::new(),
            has_more: false,
        }
    }
}
