//! Secret holders: [`SecretKey`] (256-bit key material) and [`SecretString`] (PINs and
//! passphrases). Both zeroize on drop, print as `<redacted>`, are not `Clone`, and expose
//! their contents only inside a closure.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every aedb key, in bytes (256-bit keys).
pub const KEY_LEN: usize = 32;

/// A 256-bit secret key. Zeroized on drop; never printed; bytes only via closures.
///
/// The bytes live in their own heap allocation, so moving a `SecretKey` around (returning
/// it, storing it in a map) moves a pointer and leaves no stray copies of the key on the
/// stack; the allocation is overwritten with zeros when the key is dropped.
pub struct SecretKey {
    bytes: Box<[u8; KEY_LEN]>,
}

impl SecretKey {
    /// Takes ownership of `bytes` (the caller's copy is the caller's to zeroize;
    /// prefer passing an expression so no named copy remains, or use
    /// [`SecretKey::try_from_fn`] to fill the key in place).
    pub fn new(mut bytes: [u8; KEY_LEN]) -> SecretKey {
        let key = SecretKey {
            bytes: Box::new(bytes),
        };
        bytes.zeroize();
        key
    }

    /// Builds a key by letting `fill` write the bytes directly into the key's own storage,
    /// so no intermediate copy of the secret exists. If `fill` fails, the partly written
    /// storage is zeroized and the error returned.
    ///
    /// ```
    /// use aedb_keys::SecretKey;
    /// let key = SecretKey::try_from_fn(|out| {
    ///     out.copy_from_slice(&[3u8; 32]);
    ///     Ok::<(), std::convert::Infallible>(())
    /// })
    /// .unwrap();
    /// assert!(key.with_bytes(|b| b.iter().all(|&x| x == 3)));
    /// ```
    pub fn try_from_fn<E>(
        fill: impl FnOnce(&mut [u8; KEY_LEN]) -> Result<(), E>,
    ) -> Result<SecretKey, E> {
        let mut key = SecretKey {
            bytes: Box::new([0u8; KEY_LEN]),
        };
        // On error `key` is dropped here, which zeroizes whatever `fill` wrote.
        fill(&mut key.bytes)?;
        Ok(key)
    }

    /// Runs `f` with the key bytes. The only way to read them.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8; KEY_LEN]) -> R) -> R {
        f(&self.bytes)
    }

    /// Makes an independent copy (explicit, so copies of secrets are visible in code review).
    pub fn duplicate(&self) -> SecretKey {
        SecretKey {
            bytes: Box::new(*self.bytes),
        }
    }
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.bytes.as_mut().zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A secret text such as a PKCS#11 user PIN. Zeroized on drop; `Debug` prints
/// `SecretString(<redacted>)`; there is no `Display`; the text is readable only inside a
/// [`SecretString::with_str`] closure.
pub struct SecretString {
    text: String,
}

impl SecretString {
    /// Takes ownership of `text` (its allocation is zeroized when this value drops).
    pub fn new(text: String) -> SecretString {
        SecretString { text }
    }

    /// Runs `f` with the secret text. The only way to read it.
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(&self.text)
    }

    /// Whether the secret is the empty string (not secret itself; useful for validation).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Makes an independent copy (explicit, so copies of secrets are visible in code review).
    pub fn duplicate(&self) -> SecretString {
        SecretString {
            text: self.text.clone(),
        }
    }

    /// Compares two secrets in time that depends only on their lengths, not on where they
    /// first differ.
    pub fn ct_eq(&self, other: &SecretString) -> bool {
        let (a, b) = (self.text.as_bytes(), other.text.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> SecretString {
        SecretString::new(text)
    }
}

impl From<&str> for SecretString {
    fn from(text: &str) -> SecretString {
        SecretString::new(text.to_owned())
    }
}

impl Zeroize for SecretString {
    fn zeroize(&mut self) {
        self.text.zeroize();
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretString {}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let key = SecretKey::new([0xAB; KEY_LEN]);
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn zeroize_clears_bytes() {
        let mut key = SecretKey::new([9; KEY_LEN]);
        key.zeroize();
        assert!(key.with_bytes(|b| b.iter().all(|&x| x == 0)));
    }

    #[test]
    fn duplicate_is_independent() {
        let a = SecretKey::new([1; KEY_LEN]);
        let mut b = a.duplicate();
        b.zeroize();
        assert!(a.with_bytes(|x| x[0] == 1));
    }

    #[test]
    fn try_from_fn_fills_in_place_and_propagates_errors() {
        let key = SecretKey::try_from_fn(|out| {
            out[0] = 5;
            out[31] = 6;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(key.with_bytes(|b| (b[0], b[1], b[31])), (5, 0, 6));
        let failed = SecretKey::try_from_fn(|out| {
            out[0] = 5;
            Err("device error")
        });
        assert_eq!(failed.unwrap_err(), "device error");
    }

    #[test]
    fn secret_string_redacts_compares_and_zeroizes() {
        let mut pin = SecretString::from("hunter2-pin");
        assert_eq!(format!("{pin:?}"), "SecretString(<redacted>)");
        assert_eq!(format!("{pin:#?}"), "SecretString(<redacted>)");
        assert!(pin.ct_eq(&SecretString::from("hunter2-pin")));
        assert!(!pin.ct_eq(&SecretString::from("hunter2-pio")));
        assert!(!pin.ct_eq(&SecretString::from("hunter2")));
        assert!(pin.duplicate().ct_eq(&pin));
        assert!(!pin.is_empty());
        assert_eq!(pin.with_str(str::len), 11);
        pin.zeroize();
        assert!(pin.is_empty());
    }
}
