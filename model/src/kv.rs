//! KV keys, values and stored entries.
//!
//! [`KvKey`] and [`KvValue`] are immutable, cheaply cloned byte strings whose
//! size limits are checked at construction, so a value of either type is always
//! storable. Up to 22 bytes are stored inline (no allocation, no pointer chase on
//! comparison); longer ones share one `Arc<[u8]>`.

use aedb_types::Lsn;
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use crate::bytes::SmallBytes;
use crate::limits::{LimitError, MAX_KV_KEY_LEN, MAX_KV_VALUE_LEN};

/// Writes at most `max` bytes of `bytes` as escaped ASCII, with an ellipsis when cut.
pub(crate) fn fmt_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8], max: usize) -> fmt::Result {
    let shown = &bytes[..bytes.len().min(max)];
    write!(f, "{}", shown.escape_ascii())?;
    if shown.len() < bytes.len() {
        write!(f, "…(+{} bytes)", bytes.len() - shown.len())?;
    }
    Ok(())
}

/// A KV key: 1..=[`MAX_KV_KEY_LEN`] bytes, ordered byte-wise.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvKey(SmallBytes);

impl KvKey {
    /// Checks the length limits and wraps the bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<KvKey, LimitError> {
        let bytes = bytes.as_ref();
        Self::check(bytes.len())?;
        Ok(KvKey(SmallBytes::new(bytes)))
    }

    /// Checks the length limits and takes ownership of the vector.
    pub fn from_vec(bytes: Vec<u8>) -> Result<KvKey, LimitError> {
        Self::check(bytes.len())?;
        Ok(KvKey(SmallBytes::from_vec(bytes)))
    }

    fn check(len: usize) -> Result<(), LimitError> {
        match len {
            0 => Err(LimitError::EmptyKey),
            n if n > MAX_KV_KEY_LEN => Err(LimitError::KeyTooLong { len: n }),
            _ => Ok(()),
        }
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Deref for KvKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl AsRef<[u8]> for KvKey {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<[u8]> for KvKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_bytes(f, self.0.as_bytes(), 64)
    }
}

impl fmt::Debug for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KvKey(\"")?;
        fmt_bytes(f, self.0.as_bytes(), 64)?;
        f.write_str("\")")
    }
}

impl TryFrom<&[u8]> for KvKey {
    type Error = LimitError;
    fn try_from(bytes: &[u8]) -> Result<KvKey, LimitError> {
        KvKey::new(bytes)
    }
}

impl TryFrom<&str> for KvKey {
    type Error = LimitError;
    fn try_from(s: &str) -> Result<KvKey, LimitError> {
        KvKey::new(s)
    }
}

impl TryFrom<Vec<u8>> for KvKey {
    type Error = LimitError;
    fn try_from(bytes: Vec<u8>) -> Result<KvKey, LimitError> {
        KvKey::from_vec(bytes)
    }
}

/// A KV value: 0..=[`MAX_KV_VALUE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvValue(SmallBytes);

impl KvValue {
    /// Checks the size limit and wraps the bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<KvValue, LimitError> {
        let bytes = bytes.as_ref();
        Self::check(bytes.len())?;
        Ok(KvValue(SmallBytes::new(bytes)))
    }

    /// Checks the size limit and takes ownership of the vector.
    pub fn from_vec(bytes: Vec<u8>) -> Result<KvValue, LimitError> {
        Self::check(bytes.len())?;
        Ok(KvValue(SmallBytes::from_vec(bytes)))
    }

    /// Wraps bytes the caller knows are within the limit (at most a few bytes).
    pub(crate) fn from_small(bytes: Vec<u8>) -> KvValue {
        debug_assert!(bytes.len() <= MAX_KV_VALUE_LEN);
        KvValue(SmallBytes::from_vec(bytes))
    }

    fn check(len: usize) -> Result<(), LimitError> {
        if len > MAX_KV_VALUE_LEN {
            Err(LimitError::ValueTooLarge { len })
        } else {
            Ok(())
        }
    }

    /// The value bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Deref for KvValue {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl AsRef<[u8]> for KvValue {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for KvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KvValue(\"")?;
        fmt_bytes(f, self.0.as_bytes(), 64)?;
        f.write_str("\")")
    }
}

impl TryFrom<&[u8]> for KvValue {
    type Error = LimitError;
    fn try_from(bytes: &[u8]) -> Result<KvValue, LimitError> {
        KvValue::new(bytes)
    }
}

impl TryFrom<&str> for KvValue {
    type Error = LimitError;
    fn try_from(s: &str) -> Result<KvValue, LimitError> {
        KvValue::new(s)
    }
}

impl TryFrom<Vec<u8>> for KvValue {
    type Error = LimitError;
    fn try_from(bytes: Vec<u8>) -> Result<KvValue, LimitError> {
        KvValue::from_vec(bytes)
    }
}

/// A stored KV value and the LSN of the commit that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// The value.
    pub value: KvValue,
    /// The LSN of the commit that last wrote this key (its version).
    pub lsn: Lsn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert_eq!(KvKey::new(b""), Err(LimitError::EmptyKey));
        assert!(KvKey::new(vec![0u8; MAX_KV_KEY_LEN]).is_ok());
        assert_eq!(
            KvKey::from_vec(vec![0u8; MAX_KV_KEY_LEN + 1]),
            Err(LimitError::KeyTooLong {
                len: MAX_KV_KEY_LEN + 1
            })
        );
    }

    #[test]
    fn value_limits() {
        assert!(KvValue::new(b"").is_ok());
        assert!(KvValue::from_vec(vec![0u8; MAX_KV_VALUE_LEN]).is_ok());
        assert_eq!(
            KvValue::from_vec(vec![0u8; MAX_KV_VALUE_LEN + 1]),
            Err(LimitError::ValueTooLarge {
                len: MAX_KV_VALUE_LEN + 1
            })
        );
    }

    #[test]
    fn keys_order_bytewise_and_display_escaped() {
        let a = KvKey::new(b"a").unwrap();
        let ab = KvKey::new(b"ab").unwrap();
        let b = KvKey::new(b"b").unwrap();
        assert!(a < ab && ab < b);
        assert_eq!(KvKey::new(b"k\x00\xff").unwrap().to_string(), "k\\x00\\xff");
        let long = KvKey::new(vec![b'x'; 70]).unwrap().to_string();
        assert!(long.ends_with("…(+6 bytes)"), "{long}");
    }
}
