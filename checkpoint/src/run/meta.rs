//! The meta block: counts and bounds of the whole run.
//!
//! ```text
//! entries u64 || distinct_keys u64 || tombstones u64 || data_blocks u32 ||
//! first_key (u16 len + bytes) || last_key (u16 len + bytes) ||
//! min_lsn u64 || max_lsn u64 || raw_key_bytes u64 || raw_value_bytes u64
//! [version 3: || partition directory]
//! ```
//!
//! `raw_key_bytes` / `raw_value_bytes` sum the key and value lengths of every entry (a
//! key counted once per version). The meta block's associated data also holds the whole
//! header and the footer, which makes it the authenticator of the header's LSN bounds
//! and of the footer.

use crate::run::MAX_RUN_KEY_LEN;
use crate::run::directory::Directory;
use aedb_types::{ByteReader, DecodeError, DecodeErrorKind, LenPrefix, Lsn};

/// The decoded meta block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunMeta {
    pub(crate) entries: u64,
    pub(crate) distinct_keys: u64,
    pub(crate) tombstones: u64,
    pub(crate) data_blocks: u32,
    pub(crate) first_key: Vec<u8>,
    pub(crate) last_key: Vec<u8>,
    pub(crate) min_lsn: Lsn,
    pub(crate) max_lsn: Lsn,
    pub(crate) raw_key_bytes: u64,
    pub(crate) raw_value_bytes: u64,
    /// The partition directory (version 3; `None` in version 2, whose one index and
    /// filter block the reader treats as one partition).
    pub(crate) directory: Option<Directory>,
}

impl RunMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(72 + self.first_key.len() + self.last_key.len());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&self.distinct_keys.to_le_bytes());
        out.extend_from_slice(&self.tombstones.to_le_bytes());
        out.extend_from_slice(&self.data_blocks.to_le_bytes());
        for key in [&self.first_key, &self.last_key] {
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
        }
        out.extend_from_slice(&self.min_lsn.get().to_le_bytes());
        out.extend_from_slice(&self.max_lsn.get().to_le_bytes());
        out.extend_from_slice(&self.raw_key_bytes.to_le_bytes());
        out.extend_from_slice(&self.raw_value_bytes.to_le_bytes());
        if let Some(d) = &self.directory {
            d.encode(&mut out);
        }
        out
    }

    /// Decodes and validates a meta-block plaintext: at least one entry and block,
    /// `1 <= distinct_keys <= entries`, `tombstones <= entries`,
    /// `data_blocks <= entries`, `first_key <= last_key` (equal iff one distinct key),
    /// `min_lsn <= max_lsn`; in version 3 (`partitioned`) followed by a valid directory.
    ///
    /// # Errors
    /// A [`DecodeError`] (context `"run meta block"`). Never panics.
    pub(crate) fn decode(bytes: &[u8], partitioned: bool) -> Result<RunMeta, DecodeError> {
        let mut r: ByteReader<'_> = ByteReader::new("run meta block", bytes);
        let entries = r.u64()?;
        let distinct_keys = r.u64()?;
        let tombstones = r.u64()?;
        let data_blocks = r.u32()?;
        let first_key = r
            .prefixed(LenPrefix::U16, "first key", MAX_RUN_KEY_LEN)?
            .to_vec();
        let last_key = r
            .prefixed(LenPrefix::U16, "last key", MAX_RUN_KEY_LEN)?
            .to_vec();
        let min_lsn = Lsn::new(r.u64()?);
        let max_lsn = Lsn::new(r.u64()?);
        let raw_key_bytes = r.u64()?;
        let raw_value_bytes = r.u64()?;
        let directory = if partitioned {
            Some(Directory::decode(&mut r)?)
        } else {
            None
        };
        r.finish()?;
        let invalid = |what| Err(r.err_at(0, DecodeErrorKind::Invalid { what }));
        if entries == 0 || data_blocks == 0 || u64::from(data_blocks) > entries {
            return invalid("entry or block count");
        }
        if distinct_keys == 0 || distinct_keys > entries || tombstones > entries {
            return invalid("distinct key or tombstone count");
        }
        if first_key > last_key || (first_key == last_key) != (distinct_keys == 1) {
            return invalid("key range");
        }
        if min_lsn > max_lsn {
            return invalid("LSN range");
        }
        Ok(RunMeta {
            entries,
            distinct_keys,
            tombstones,
            data_blocks,
            first_key,
            last_key,
            min_lsn,
            max_lsn,
            raw_key_bytes,
            raw_value_bytes,
            directory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunMeta {
        RunMeta {
            entries: 5,
            distinct_keys: 3,
            tombstones: 1,
            data_blocks: 2,
            first_key: b"a".to_vec(),
            last_key: b"c".to_vec(),
            min_lsn: Lsn::new(2),
            max_lsn: Lsn::new(9),
            raw_key_bytes: 5,
            raw_value_bytes: 12,
            directory: None,
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(RunMeta::decode(&bytes, false), Ok(m.clone()));
        for cut in 0..bytes.len() {
            assert!(RunMeta::decode(&bytes[..cut], false).is_err());
        }
        // Version 3 carries the directory; each version refuses the other's block.
        let mut v3 = m.clone();
        v3.directory = Some(Directory::single(
            b"c",
            crate::run::directory::PartitionFields {
                blocks: 2,
                entries: 5,
                data_len: 90,
                index_len: 40,
                filter_len: 30,
            },
        ));
        let v3_bytes = v3.encode();
        assert_eq!(RunMeta::decode(&v3_bytes, true), Ok(v3));
        assert!(RunMeta::decode(&v3_bytes, false).is_err());
        assert!(RunMeta::decode(&bytes, true).is_err());
        let bad: [fn(&mut RunMeta); 8] = [
            |m| m.entries = 0,
            |m| m.data_blocks = 6,
            |m| m.distinct_keys = 0,
            |m| m.distinct_keys = 6,
            |m| m.tombstones = 6,
            |m| m.first_key = b"d".to_vec(),
            |m| m.distinct_keys = 1,
            |m| m.min_lsn = Lsn::new(10),
        ];
        for change in bad {
            let mut b = m.clone();
            change(&mut b);
            assert!(RunMeta::decode(&b.encode(), false).is_err(), "{b:?}");
        }
    }
}
