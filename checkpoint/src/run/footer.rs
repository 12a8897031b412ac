//! The run-file footer: the last 48 bytes, locating the index, filter and meta blocks.
//!
//! ```text
//! offset size field
//!      0    8 index_offset
//!      8    4 index_len      stored length of the index block
//!     12    8 filter_offset
//!     20    4 filter_len
//!     24    8 meta_offset
//!     32    4 meta_len
//!     36    8 magic          "AEDBRUN\0"
//!     44    4 footer_crc     CRC-32 (IEEE) of bytes [0, 44)
//! ```
//!
//! Bytes `[0, 44)` are part of the meta block's associated data, so a footer that was
//! changed and given a matching CRC still fails the meta block's authentication. The
//! magic and CRC tell a truncated or unfinished file apart early.

use crate::run::header::RUN_HEADER_LEN;

/// Size of the footer in bytes.
pub const RUN_FOOTER_LEN: usize = 48;
/// Magic of the footer.
pub const RUN_FOOTER_MAGIC: [u8; 8] = *b"AEDBRUN\0";
/// Length of the footer's fields bound into the meta block's AAD (all but the CRC).
pub(crate) const FOOTER_FIELDS_LEN: usize = 44;

/// Why a footer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FooterProblem {
    /// The last bytes are not a footer (no magic, or the file is shorter than a header
    /// and a footer): the file is truncated, unfinished or has trailing bytes.
    #[error(
        "no footer at the end of the file ({len} bytes): truncated, never finished, or followed by other bytes"
    )]
    Missing {
        /// The file length.
        len: u64,
    },
    /// CRC mismatch: the footer was corrupted.
    #[error(
        "footer CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): footer corrupted"
    )]
    BadCrc {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The block locations do not tile the file.
    #[error("block layout does not fit the file: {what}")]
    Layout {
        /// What does not fit.
        what: &'static str,
    },
}

/// Where the three metadata blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index_offset: u64,
    pub(crate) index_len: u32,
    pub(crate) filter_offset: u64,
    pub(crate) filter_len: u32,
    pub(crate) meta_offset: u64,
    pub(crate) meta_len: u32,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; RUN_FOOTER_LEN] {
        let mut out = [0u8; RUN_FOOTER_LEN];
        out[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.index_len.to_le_bytes());
        out[12..20].copy_from_slice(&self.filter_offset.to_le_bytes());
        out[20..24].copy_from_slice(&self.filter_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.meta_offset.to_le_bytes());
        out[32..36].copy_from_slice(&self.meta_len.to_le_bytes());
        out[36..44].copy_from_slice(&RUN_FOOTER_MAGIC);
        let crc = crc32fast::hash(&out[..FOOTER_FIELDS_LEN]);
        out[FOOTER_FIELDS_LEN..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the footer (magic, then CRC) and checks that the blocks it locates tile
    /// the file: data blocks from the header to the index, then index, filter, meta and
    /// footer back to back, each at least `min_block` bytes long.
    pub(crate) fn decode(
        bytes: &[u8; RUN_FOOTER_LEN],
        file_len: u64,
        min_block: u64,
    ) -> Result<Footer, FooterProblem> {
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes[36..44] != RUN_FOOTER_MAGIC {
            return Err(FooterProblem::Missing { len: file_len });
        }
        let stored = u32_at(FOOTER_FIELDS_LEN);
        let computed = crc32fast::hash(&bytes[..FOOTER_FIELDS_LEN]);
        if stored != computed {
            return Err(FooterProblem::BadCrc { stored, computed });
        }
        let f = Footer {
            index_offset: u64_at(0),
            index_len: u32_at(8),
            filter_offset: u64_at(12),
            filter_len: u32_at(20),
            meta_offset: u64_at(24),
            meta_len: u32_at(32),
        };
        let layout = |what| Err(FooterProblem::Layout { what });
        let header_and_data = RUN_HEADER_LEN as u64 + min_block;
        if f.index_offset < header_and_data {
            return layout("no room for a data block before the index");
        }
        let lens = [f.index_len, f.filter_len, f.meta_len];
        if lens.iter().any(|&l| u64::from(l) < min_block) {
            return layout("a metadata block is shorter than its envelope");
        }
        if f.index_offset.checked_add(u64::from(f.index_len)) != Some(f.filter_offset) {
            return layout("the filter block does not follow the index block");
        }
        if f.filter_offset.checked_add(u64::from(f.filter_len)) != Some(f.meta_offset) {
            return layout("the meta block does not follow the filter block");
        }
        let end = f
            .meta_offset
            .checked_add(u64::from(f.meta_len))
            .and_then(|e| e.checked_add(RUN_FOOTER_LEN as u64));
        if end != Some(file_len) {
            return layout("the footer does not follow the meta block");
        }
        Ok(f)
    }

    /// The fields bound into the meta block's associated data.
    pub(crate) fn fields(&self) -> [u8; FOOTER_FIELDS_LEN] {
        let mut out = [0u8; FOOTER_FIELDS_LEN];
        out.copy_from_slice(&self.encode()[..FOOTER_FIELDS_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            index_offset: 200,
            index_len: 40,
            filter_offset: 240,
            filter_len: 30,
            meta_offset: 270,
            meta_len: 100,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let f = sample();
        let b = f.encode();
        assert_eq!(&b[36..44], b"AEDBRUN\0");
        assert_eq!(&f.fields()[..], &b[..44]);
        assert_eq!(Footer::decode(&b, 418, 17), Ok(f));
        assert!(matches!(
            Footer::decode(&b, 419, 17),
            Err(FooterProblem::Layout { .. })
        ));
        assert!(matches!(
            Footer::decode(&b, 418, 41),
            Err(FooterProblem::Layout { .. })
        ));
        for i in 0..RUN_FOOTER_LEN {
            let mut bad = b;
            bad[i] ^= 1;
            assert!(Footer::decode(&bad, 418, 17).is_err(), "flip at {i}");
        }
        let mut no_magic = b;
        no_magic[40] = 0;
        assert_eq!(
            Footer::decode(&no_magic, 418, 17),
            Err(FooterProblem::Missing { len: 418 })
        );
        let mut overflow = sample();
        overflow.meta_offset = u64::MAX - 10;
        overflow.filter_len = 1;
        assert!(Footer::decode(&overflow.encode(), 418, 1).is_err());
        let small = Footer {
            index_offset: 104,
            ..sample()
        };
        assert!(Footer::decode(&small.encode(), 418, 17).is_err());
    }
}
