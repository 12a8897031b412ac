//! The HMAC-SHA256 chain helper: one implementation of "each link's MAC covers the previous
//! link's MAC", shared by every tamper-evident log aedb writes.
//!
//! A link's MAC is `HMAC-SHA256(key, before || prev_mac || after)`, where `before` and `after`
//! are the link's own authenticated bytes on either side of the previous MAC (formats put it
//! in different places: the manifest frame MAC starts with it, an audit row's MAC has a
//! domain and table-name prefix first). Editing, deleting, inserting or reordering a link
//! breaks the MAC of every later link. The chain starts from a genesis value: the manifest
//! header MAC, or zeros for an audit table.
//!
//! Users:
//! * the manifest ([`crate::Manifest`]): frames chained from the header MAC;
//! * the audit tables (`aedb-actors`, `audit.rs`): rows chained per table from zeros, each
//!   link under the audit key its row names;
//! * backup manifests (`aedb`, `backup/manifest.rs`): the file MAC and key-check value use
//!   [`hmac_sha256`] / [`hmac_sha256_verify`] (a backup chain links its files by SHA-256 of
//!   the parent, which is not an HMAC chain).
//!
//! Verification is constant time in the MAC ([`hmac::Mac::verify_slice`]). Keys are only
//! read through [`SecretKey::with_bytes`].

use aedb_keys::SecretKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of every chain MAC (HMAC-SHA256).
pub const CHAIN_MAC_LEN: usize = 32;

/// One chain MAC.
pub type ChainMac = [u8; CHAIN_MAC_LEN];

fn mac_over(key: &SecretKey, parts: &[&[u8]]) -> Hmac<Sha256> {
    key.with_bytes(|k| {
        let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(k) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        for p in parts {
            m.update(p);
        }
        m
    })
}

/// `HMAC-SHA256(key, parts[0] || parts[1] || ...)`.
pub fn hmac_sha256(key: &SecretKey, parts: &[&[u8]]) -> ChainMac {
    mac_over(key, parts).finalize().into_bytes().into()
}

/// Whether `expected` is `HMAC-SHA256(key, parts[0] || parts[1] || ...)`, compared in
/// constant time (a wrong length is simply `false`).
pub fn hmac_sha256_verify(key: &SecretKey, parts: &[&[u8]], expected: &[u8]) -> bool {
    mac_over(key, parts).verify_slice(expected).is_ok()
}

/// One link to verify: its key, its authenticated bytes around the previous MAC, and the
/// MAC stored with it.
#[derive(Clone, Copy)]
pub struct ChainLink<'a> {
    /// The key this link was written under.
    pub key: &'a SecretKey,
    /// Authenticated bytes before the previous MAC.
    pub before: &'a [u8],
    /// Authenticated bytes after the previous MAC.
    pub after: &'a [u8],
    /// The MAC stored with the link.
    pub mac: &'a [u8],
}

/// Where a chain stopped verifying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("HMAC chain broken at link {index}")]
pub struct ChainBreak {
    /// Index (from 0) of the first link whose MAC does not verify.
    pub index: usize,
}

/// The head of an HMAC chain: the MAC the next link must cover.
///
/// ```
/// use aedb_keys::SecretKey;
/// use aedb_manifest::chain::{ChainLink, HmacChain};
///
/// let key = SecretKey::new([7; 32]);
/// let mut writer = HmacChain::new([0; 32]);
/// let first = writer.append(&key, b"row", b"1");
/// let second = writer.append(&key, b"row", b"2");
/// assert_eq!(writer.head(), second);
///
/// let links = [
///     ChainLink { key: &key, before: b"row", after: b"1", mac: &first },
///     ChainLink { key: &key, before: b"row", after: b"2", mac: &second },
/// ];
/// assert_eq!(HmacChain::new([0; 32]).verify_sequence(links), Ok(second));
/// // Reordered links break the chain at the first one.
/// let swapped = [links[1], links[0]];
/// assert_eq!(HmacChain::new([0; 32]).verify_sequence(swapped).unwrap_err().index, 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmacChain {
    head: ChainMac,
}

impl HmacChain {
    /// A chain whose next link covers `genesis` (the header MAC, zeros, or the stored MAC
    /// of the last link when continuing a chain).
    pub const fn new(genesis: ChainMac) -> HmacChain {
        HmacChain { head: genesis }
    }

    /// The MAC the next link covers: the genesis value or the last link's MAC.
    pub const fn head(&self) -> ChainMac {
        self.head
    }

    /// The MAC of the next link, `HMAC-SHA256(key, before || head || after)`, without
    /// advancing.
    pub fn link_mac(&self, key: &SecretKey, before: &[u8], after: &[u8]) -> ChainMac {
        hmac_sha256(key, &[before, &self.head, after])
    }

    /// Computes the next link's MAC and advances the head to it.
    pub fn append(&mut self, key: &SecretKey, before: &[u8], after: &[u8]) -> ChainMac {
        self.head = self.link_mac(key, before, after);
        self.head
    }

    /// Checks the next link's stored MAC (constant time); advances the head to it only if
    /// it verifies.
    pub fn verify_next(
        &mut self,
        key: &SecretKey,
        before: &[u8],
        after: &[u8],
        mac: &[u8],
    ) -> bool {
        if !hmac_sha256_verify(key, &[before, &self.head, after], mac) {
            return false;
        }
        // Verified: `mac` is exactly CHAIN_MAC_LEN bytes.
        self.head.copy_from_slice(mac);
        true
    }

    /// Verifies `links` in order from the current head; returns the new head, or the index
    /// (counted within `links`) of the first link that does not verify. On failure the head
    /// stays at the last verified link.
    pub fn verify_sequence<'a>(
        &mut self,
        links: impl IntoIterator<Item = ChainLink<'a>>,
    ) -> Result<ChainMac, ChainBreak> {
        for (index, link) in links.into_iter().enumerate() {
            if !self.verify_next(link.key, link.before, link.after, link.mac) {
                return Err(ChainBreak { index });
            }
        }
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_the_hmac_of_before_prev_after() {
        let key = SecretKey::new([1; 32]);
        let mut chain = HmacChain::new([9; 32]);
        let mac = chain.append(&key, b"ab", b"cd");
        assert_eq!(mac, hmac_sha256(&key, &[b"ab", &[9; 32], b"cd"]));
        // Only the concatenation counts, not how it is split into parts.
        let mut whole = b"ab".to_vec();
        whole.extend_from_slice(&[9; 32]);
        whole.extend_from_slice(b"cd");
        assert_eq!(mac, hmac_sha256(&key, &[&whole]));
        assert_eq!(chain.head(), mac);
    }

    #[test]
    fn verification_catches_edits_wrong_keys_and_lengths() {
        let key = SecretKey::new([1; 32]);
        let other = SecretKey::new([2; 32]);
        let writer = HmacChain::new([0; 32]);
        let mac = writer.link_mac(&key, b"", b"frame");
        let mut reader = HmacChain::new([0; 32]);
        assert!(!reader.verify_next(&other, b"", b"frame", &mac));
        assert!(!reader.verify_next(&key, b"", b"framE", &mac));
        assert!(!reader.verify_next(&key, b"", b"frame", &mac[..31]));
        assert_eq!(reader.head(), [0; 32], "a failed check does not advance");
        assert!(reader.verify_next(&key, b"", b"frame", &mac));
        assert_eq!(reader.head(), mac);
    }

    #[test]
    fn a_sequence_reports_its_first_broken_link() {
        let key = SecretKey::new([3; 32]);
        let mut w = HmacChain::new([0; 32]);
        let bodies: [&[u8]; 3] = [b"a", b"b", b"c"];
        let macs: Vec<ChainMac> = bodies.iter().map(|b| w.append(&key, b"", b)).collect();
        let links = |bodies: &[&'static [u8]; 3]| -> Vec<(Vec<u8>, ChainMac)> {
            bodies
                .iter()
                .map(|b| b.to_vec())
                .zip(macs.iter().copied())
                .collect()
        };
        let good = links(&bodies);
        let as_links = |v: &[(Vec<u8>, ChainMac)]| -> Result<ChainMac, ChainBreak> {
            let key = &key;
            HmacChain::new([0; 32]).verify_sequence(v.iter().map(|(after, mac)| ChainLink {
                key,
                before: b"",
                after,
                mac,
            }))
        };
        assert_eq!(as_links(&good), Ok(macs[2]));
        let edited = links(&[b"a", b"X", b"c"]);
        assert_eq!(as_links(&edited), Err(ChainBreak { index: 1 }));
        let mut deleted = good.clone();
        deleted.remove(0);
        assert_eq!(as_links(&deleted), Err(ChainBreak { index: 0 }));
        assert_eq!(as_links(&[]), Ok([0; 32]));
    }
}
