//! [`ByteReader`]: the bounds-checked cursor every aedb binary decoder reads through.
//!
//! Every read checks the remaining length before slicing, every length prefix and count
//! is checked against its limit and the remaining input before anything is allocated,
//! and every failure is a [`DecodeError`] at the offending field's offset. Nothing in
//! here panics, whatever the bytes. All integers are little-endian, as every aedb
//! format writes them.
//!
//! ```
//! use aedb_types::reader::{ByteReader, LenPrefix};
//! let bytes = [7u8, 2, 0, b'h', b'i'];
//! let mut r: ByteReader<'_> = ByteReader::new("example", &bytes);
//! assert_eq!(r.u8().unwrap(), 7);
//! assert_eq!(r.str(LenPrefix::U16, "greeting", 16).unwrap(), "hi");
//! r.finish().unwrap();
//! ```

use std::convert::Infallible;

use crate::decode::{DecodeError, DecodeErrorKind};

/// The width of a length prefix or count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenPrefix {
    /// One byte.
    U8,
    /// Two bytes, little-endian.
    U16,
    /// Four bytes, little-endian.
    U32,
}

/// A forward-only cursor over input bytes. `D` is the decoder's own field-validation
/// error, reported as [`DecodeErrorKind::Domain`] (see [`ByteReader::field`]).
#[derive(Clone, Debug)]
pub struct ByteReader<'a, D = Infallible> {
    context: &'static str,
    buf: &'a [u8],
    pos: usize,
    domain: std::marker::PhantomData<fn() -> D>,
}

impl<'a, D> ByteReader<'a, D> {
    /// A reader over `buf`; `context` names what is decoded, for error messages.
    pub fn new(context: &'static str, buf: &'a [u8]) -> Self {
        ByteReader {
            context,
            buf,
            pos: 0,
            domain: std::marker::PhantomData,
        }
    }

    /// What is being decoded.
    pub fn context(&self) -> &'static str {
        self.context
    }

    /// Current offset from the start of the input.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error of `kind` at the current offset.
    pub fn err(&self, kind: DecodeErrorKind<D>) -> DecodeError<D> {
        self.err_at(self.pos, kind)
    }

    /// An error of `kind` at `offset`.
    pub fn err_at(&self, offset: usize, kind: DecodeErrorKind<D>) -> DecodeError<D> {
        DecodeError::new(self.context, offset, kind)
    }

    /// Steps back `n` bytes (not before the start), so the next error points at a
    /// field just read.
    pub fn back(&mut self, n: usize) -> &mut Self {
        self.pos = self.pos.saturating_sub(n);
        self
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError<D>> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(self.err(DecodeErrorKind::UnexpectedEnd {
                needed: n as u64,
                remaining,
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError<D>> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError<D>> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError<D>> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError<D>> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError<D>> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian `u128`.
    pub fn u128(&mut self) -> Result<u128, DecodeError<D>> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError<D>> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A boolean byte (0 or 1); any other value is [`DecodeErrorKind::InvalidByte`]
    /// at the byte.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError<D>> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(self
                .back(1)
                .err(DecodeErrorKind::InvalidByte { what, byte })),
        }
    }

    /// A tag byte of at most `max`; a larger one is [`DecodeErrorKind::UnknownTag`] at
    /// the byte.
    pub fn tag(&mut self, what: &'static str, max: u8) -> Result<u8, DecodeError<D>> {
        let tag = self.u8()?;
        if tag > max {
            return Err(self.back(1).err(DecodeErrorKind::UnknownTag { what, tag }));
        }
        Ok(tag)
    }

    /// `N` magic bytes that must equal `expected` ([`DecodeErrorKind::BadMagic`]
    /// otherwise).
    pub fn magic<const N: usize>(&mut self, expected: &[u8; N]) -> Result<(), DecodeError<D>> {
        let at = self.pos;
        if &self.array::<N>()? != expected {
            return Err(self.err_at(at, DecodeErrorKind::BadMagic));
        }
        Ok(())
    }

    fn prefix(&mut self, prefix: LenPrefix) -> Result<u64, DecodeError<D>> {
        Ok(match prefix {
            LenPrefix::U8 => u64::from(self.u8()?),
            LenPrefix::U16 => u64::from(self.u16()?),
            LenPrefix::U32 => u64::from(self.u32()?),
        })
    }

    /// A length-prefixed byte string of at most `max` bytes. A length over `max` is
    /// [`DecodeErrorKind::LengthTooLarge`] at the prefix, checked before anything else.
    pub fn prefixed(
        &mut self,
        prefix: LenPrefix,
        what: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError<D>> {
        let start = self.pos;
        let len = self.prefix(prefix)?;
        if len > max as u64 {
            return Err(self.err_at(
                start,
                DecodeErrorKind::LengthTooLarge {
                    what,
                    len,
                    max: max as u64,
                },
            ));
        }
        // len <= max, so it fits in usize.
        self.bytes(len as usize)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes; errors point at the prefix.
    pub fn str(
        &mut self,
        prefix: LenPrefix,
        what: &'static str,
        max: usize,
    ) -> Result<&'a str, DecodeError<D>> {
        let start = self.pos;
        let bytes = self.prefixed(prefix, what, max)?;
        std::str::from_utf8(bytes)
            .map_err(|_| self.err_at(start, DecodeErrorKind::InvalidUtf8 { what }))
    }

    /// An item count of the given width, checked against `max` and against the
    /// remaining input assuming each item takes at least `min_item` bytes, so a caller
    /// can allocate for it. The error points just past the count, where the items
    /// would start.
    pub fn count(
        &mut self,
        prefix: LenPrefix,
        what: &'static str,
        min_item: usize,
        max: u64,
    ) -> Result<usize, DecodeError<D>> {
        let count = self.prefix(prefix)?;
        let remaining = self.remaining();
        let capacity = (remaining / min_item.max(1)) as u64;
        if count > capacity || count > max {
            return Err(self.err(DecodeErrorKind::CountTooLarge {
                what,
                count,
                remaining,
            }));
        }
        // count <= remaining, so it fits in usize.
        Ok(count as usize)
    }

    /// Runs `f` and reports its field-validation error as
    /// [`DecodeErrorKind::Domain`] at the offset where `f` started.
    pub fn field<T, E: Into<D>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Result<T, E>, DecodeError<D>>,
    ) -> Result<T, DecodeError<D>> {
        let start = self.pos;
        f(self)?.map_err(|e| self.err_at(start, DecodeErrorKind::Domain(e.into())))
    }

    /// Succeeds if the whole input has been consumed; otherwise
    /// [`DecodeErrorKind::TrailingBytes`] at the first extra byte.
    pub fn finish(&self) -> Result<(), DecodeError<D>> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.err(DecodeErrorKind::TrailingBytes { count })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R<'a> = ByteReader<'a>;

    #[test]
    fn reads_little_endian_and_reports_short_reads() {
        let bytes = [1u8, 0, 2, 0, 0, 0, 9];
        let mut r = R::new("test", &bytes);
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(r.u32(), Ok(2));
        assert_eq!(r.remaining(), 1);
        let e = r.u16().unwrap_err();
        assert_eq!(e.offset, 6);
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedEnd {
                needed: 2,
                remaining: 1
            }
        );
        assert_eq!(r.u8(), Ok(9));
        assert_eq!(r.pos(), 7);
        r.finish().unwrap();
    }

    #[test]
    fn prefixes_counts_and_trailing_bytes() {
        let bytes = [3u8, 0xff, 0xfe, 0xfd, 0xff, 0xff, 0xff, 0xff, 1];
        let mut r = R::new("test", &bytes);
        let e = r.str(LenPrefix::U8, "name", 8).unwrap_err();
        assert_eq!(e.offset, 0);
        assert_eq!(e.kind, DecodeErrorKind::InvalidUtf8 { what: "name" });
        let mut r = R::new("test", &bytes);
        let e = r.prefixed(LenPrefix::U8, "name", 2).unwrap_err();
        assert!(matches!(
            e.kind,
            DecodeErrorKind::LengthTooLarge { len: 3, .. }
        ));
        let mut r = R::new("test", &bytes[4..]);
        let e = r.count(LenPrefix::U32, "item", 1, u64::MAX).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::CountTooLarge { .. }));
        let mut r = R::new("test", &bytes[8..]);
        assert_eq!(r.bool("flag"), Ok(true));
        let mut r = R::new("test", &bytes[..2]);
        r.u8().unwrap();
        let e = r.finish().unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (1, DecodeErrorKind::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn magic_and_tags() {
        let mut r = R::new("test", b"AEDBx\x05");
        assert_eq!(r.clone().magic(b"AEDB").map(|_| ()), Ok(()));
        assert_eq!(
            r.magic(b"AEDC").unwrap_err().kind,
            DecodeErrorKind::BadMagic
        );
        let mut r = R::new("test", b"\x05");
        let e = r.tag("kind", 4).unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (
                0,
                DecodeErrorKind::UnknownTag {
                    what: "kind",
                    tag: 5
                }
            )
        );
    }
}
