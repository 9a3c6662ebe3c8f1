//! Reading what test guests report: the tagged binary dumps the
//! boot-protocol test kernels write to the debug console.

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
