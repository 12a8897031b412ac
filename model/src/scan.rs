//! Scan results and scan direction.

pub use aedb_storage::Direction;

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
    /// Collects at most `limit` items from `iter`, noting whether more remain; stops at
    /// the first error.
    pub(crate) fn try_collect<E>(
        iter: impl Iterator<Item = Result<T, E>>,
        limit: usize,
    ) -> Result<Page<T>, E> {
        let mut items = Vec::with_capacity(limit.min(1024));
        for item in iter {
            let item = item?;
            if items.len() == limit {
                return Ok(Page {
                    items,
                    has_more: true,
                });
            }
            items.push(item);
        }
        Ok(Page {
            items,
            has_more: false,
        })
    }
}
