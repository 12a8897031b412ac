//! Little-endian byte cursor of the manifest record codec (the checkpoint header codec has
//! its own copy in `aedb-checkpoint`).
//!
//! Every read checks the remaining length first and reports where it ran out, so decoders
//! built on it cannot index out of bounds and never panic on any input.

/// A read ran past the end of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Short {
    /// Offset (within the decoded slice) where the read started.
    pub offset: usize,
    /// How many bytes the read needed.
    pub needed: usize,
}

/// A forward-only cursor over a byte slice; all integers are little-endian.
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes, pos: 0 }
    }

    /// Current offset from the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.remaining() < n {
            return Err(Short {
                offset: self.pos,
                needed: n,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_short_reads() {
        let bytes = [1u8, 0, 2, 0, 0, 0, 9];
        let mut r = ByteReader::new(&bytes);
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(r.u32(), Ok(2));
        assert_eq!(r.remaining(), 1);
        assert_eq!(
            r.u16(),
            Err(Short {
                offset: 6,
                needed: 2
            })
        );
        assert_eq!(r.u8(), Ok(9));
        assert_eq!(r.pos(), 7);
    }
}
