//! Reading what test guests report: the tagged binary dumps the
//! boot-protocol test kernels write to the debug console, and little-endian
//! integers in the bytes guests dump.

/// The little-endian u32 at `off` in `b`.
pub fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `off` in `b`.
pub fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Reads the tagged binary dumps the boot-protocol test kernels write to the
/// debug console: 2-byte tags, little-endian integers, NUL-terminated
/// strings. Every read panics with the offset if the dump ends early.
#[derive(Debug)]
pub struct Dump<'a> {
    /// The whole dump.
    pub bytes: &'a [u8],
    /// The read position.
    pub at: usize,
}

impl<'a> Dump<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Dump { bytes, at: 0 }
    }

    /// Asserts the whole dump was read.
    pub fn assert_end(&self) {
        assert_eq!(self.at, self.bytes.len(), "trailing bytes after the dump");
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let s = self.bytes.get(self.at..self.at + n).unwrap_or_else(|| {
            panic!(
                "dump ends at {} (wanted {n} bytes at {})",
                self.bytes.len(),
                self.at
            )
        });
        self.at += n;
        s
    }

    /// Expects the 2-byte tag `t` next.
    pub fn tag(&mut self, t: &[u8; 2]) {
        let at = self.at;
        let got = self.take(2);
        assert_eq!(
            got,
            t,
            "tag {:?} expected at dump offset {at}",
            String::from_utf8_lossy(t)
        );
    }

    /// A NUL-terminated string (without the NUL).
    pub fn cstr(&mut self) -> &'a [u8] {
        let len = self.bytes[self.at..]
            .iter()
            .position(|&b| b == 0)
            .expect("NUL-terminated string in dump");
        let s = self.take(len);
        self.take(1);
        s
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
}
