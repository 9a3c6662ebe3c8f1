//! The compressed kernel inside a bzImage: recognising its codec by magic
//! number and decompressing it on the host, with a cap on the output size so
//! a decompression bomb cannot exhaust host memory.
//!
//! Codecs and the magic numbers boot.rst and the kernel's build use: gzip
//! (`1f 8b`), bzip2 (`BZh`), LZMA "alone" (`5d 00 00`), XZ
//! (`fd 37 7a 58 5a 00`), LZO in lzop format (`89 4c 5a 4f`), LZ4 legacy
//! frame (`02 21 4c 18`) and Zstandard (`28 b5 2f fd`).
//!
//! The kernel's build appends the uncompressed size as a little-endian u32
//! to every payload except gzip's (whose own trailer ends with it), so each
//! decoder here stops at the end of its first stream and ignores what
//! follows.
//!
//! [`decompress_with`] streams the output in pieces of at most
//! [`PIECE_SIZE`] through a reused huge-page buffer, so a kernel can be
//! loaded as it decompresses without ever holding all of it (53 MB for a
//! distribution kernel: touching that much fresh memory costs more here
//! than decoding it); [`decompress`] collects the pieces in a `Vec` for
//! tools that want the whole vmlinux.
//!
//! The decoders are behind the crate's default-on `bzimage-payloads`
//! feature. Without it codecs are still recognised, and decompressing
//! fails with [`PayloadError::NotBuilt`] naming the codec and the feature.

use std::fmt;

use vmm_memory::guest_ram::advise_huge_pages_in;

#[cfg(feature = "bzimage-payloads")]
mod decode;
#[cfg(feature = "bzimage-payloads")]
pub mod test_support;
#[cfg(test)]
mod tests;

/// The cargo feature that builds the payload decoders (and the kernel
/// cache).
pub const PAYLOAD_FEATURE: &str = "bzimage-payloads";

/// Largest decompressed kernel accepted, whatever the guest's size: far
/// above any real vmlinux (about 60 MiB for a distribution kernel).
pub const MAX_DECOMPRESSED: u64 = 512 << 20;

/// The LZ4 legacy frame's per-chunk output size: the kernel's build (`lz4
/// -l`) compresses in 8 MiB chunks and its decoder assumes that size.
const LZ4_LEGACY_CHUNK: usize = 8 << 20;
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

/// A payload compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (`1f 8b`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
    /// LZMA "alone" format (`5d 00 00`).
    Lzma,
    /// XZ (`fd 37 7a 58 5a 00`).
    Xz,
    /// lzop (`89 4c 5a 4f 00 0d 0a 1a 0a`).
    Lzo,
    /// LZ4 legacy frame (`02 21 4c 18`).
    Lz4,
    /// Zstandard (`28 b5 2f fd`).
    Zstd,
}

impl Codec {
    /// Every codec, in detection order.
    pub const ALL: [Codec; 7] = [
        Codec::Gzip,
        Codec::Bzip2,
        Codec::Lzma,
        Codec::Xz,
        Codec::Lzo,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec's name, as the kernel's CONFIG_KERNEL_* options spell it
    /// (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Lzma => "lzma",
            Codec::Xz => "xz",
            Codec::Lzo => "lzo",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The magic bytes a stream in this format starts with.
    pub fn magic(self) -> &'static [u8] {
        match self {
            Codec::Gzip => &[0x1f, 0x8b],
            Codec::Bzip2 => b"BZh",
            Codec::Lzma => &[0x5d, 0x00, 0x00],
            Codec::Xz => &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
            Codec::Lzo => &[0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a],
            Codec::Lz4 => &LZ4_LEGACY_MAGIC,
            Codec::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
        }
    }

    /// The codec whose magic `data` starts with, if any.
    pub fn detect(data: &[u8]) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| data.starts_with(c.magic()))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Up to the first 8 bytes of `data` in hex, for error messages.
pub fn first_bytes(data: &[u8]) -> String {
    if data.is_empty() {
        return "(none: it is empty)".to_string();
    }
    data.iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Errors decompressing a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// A codec whose decoder this build of the crate leaves out.
    #[error("kernel payload is {codec}-compressed, but vmm-loader was built without its `{}` feature, which decompresses bzImage payloads on the host (enable the feature, or start the bzImage through its own entry with LoadRequest::bzimage_own_entry)", PAYLOAD_FEATURE)]
    NotBuilt {
        /// The codec.
        codec: Codec,
    },
    /// No known magic number.
    #[error("unknown kernel payload compression: it starts with {first} (expected gzip 1f 8b, bzip2 42 5a 68, lzma 5d 00 00, xz fd 37 7a 58 5a 00, lzo 89 4c 5a 4f, lz4 02 21 4c 18 or zstd 28 b5 2f fd)")]
    UnknownFormat {
        /// The payload's first bytes, in hex.
        first: String,
    },
    /// A codec recognised but not decoded here.
    #[error("kernel payload is {codec}-compressed, which this loader does not support: {why}")]
    Unsupported {
        /// The codec.
        codec: Codec,
        /// Why.
        why: &'static str,
    },
    /// The codec's decoder rejected the data.
    #[error("corrupt {codec} kernel payload: {detail}")]
    Corrupt {
        /// The codec.
        codec: Codec,
        /// The decoder's complaint.
        detail: String,
    },
    /// The output would exceed the limit.
    #[error("{codec} kernel payload decompresses to more than the limit of {limit} bytes ({} MiB: the smaller of guest RAM and {} MiB)", limit >> 20, MAX_DECOMPRESSED >> 20)]
    TooLarge {
        /// The codec.
        codec: Codec,
        /// The limit in bytes.
        limit: u64,
    },
}

/// Most bytes [`decompress_with`] hands its sink at once: the LZ4 legacy
/// chunk size, so an LZ4 chunk is one piece. Other codecs fill pieces of this
/// size, all but the last full.
pub const PIECE_SIZE: usize = LZ4_LEGACY_CHUNK;

/// Detects the codec of `data` and decompresses its first stream, producing
/// at most `limit` bytes.
///
/// The output is allocated once, sized by the uncompressed-size trailer the
/// kernel's build appends (capped by `limit`; it is only a hint, as a wrong
/// one costs a reallocation or unused address space, never correctness), and
/// backed by huge pages where the host allows. Loading a kernel does not
/// need the whole output: [`decompress_with`] streams it.
pub fn decompress(data: &[u8], limit: u64) -> Result<(Codec, Vec<u8>), PayloadError> {
    let hint = data
        .len()
        .checked_sub(4)
        .and_then(|at| data.get(at..))
        .map_or(0, |t| {
            u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
        });
    let mut out = Vec::with_capacity(usize::try_from(hint.min(limit)).unwrap_or(0));
    // Tens of MiB written once: huge pages make that 512 times fewer faults.
    advise_huge_pages_in(out.spare_capacity_mut());
    let (codec, _) = decompress_with(data, limit, |piece: &[u8]| {
        out.extend_from_slice(piece);
        Ok::<(), PayloadError>(())
    })?;
    Ok((codec, out))
}

/// Detects the codec of `data` and decompresses its first stream piece by
/// piece, handing `sink` consecutive pieces of at most [`PIECE_SIZE`] bytes
/// in stream order, without ever holding the whole output: the pieces pass
/// through a reused, huge-page backed buffer (two for LZ4 on a host with
/// more than one CPU, where two chunks are decoded at a time). Fails (before
/// handing on the piece that crosses it) once the output would exceed
/// `limit` bytes, and stops at the first error of the sink. Returns the
/// codec and the total size.
pub fn decompress_with<E: From<PayloadError>>(
    data: &[u8],
    limit: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(Codec, u64), E> {
    let codec = Codec::detect(data).ok_or_else(|| PayloadError::UnknownFormat {
        first: first_bytes(data),
    })?;
    if codec == Codec::Lzo {
        return Err(lzo_unsupported().into());
    }
    let total = decode_payload(codec, data, limit, &mut sink)?;
    if total == 0 {
        return Err(PayloadError::Corrupt {
            codec,
            detail: "it decompresses to nothing".to_string(),
        }
        .into());
    }
    Ok((codec, total))
}

/// Why LZO payloads are not decompressed, with or without the feature.
fn lzo_unsupported() -> PayloadError {
    PayloadError::Unsupported {
        codec: Codec::Lzo,
        why: "no permissively licensed LZO1X decoder that is safe on corrupt input is available (lzokay-native panics on it; minilzo-rs, rust-lzo and lzo1x are GPL); rebuild the kernel with another CONFIG_KERNEL_* codec or start the bzImage through its own entry (LoadRequest::bzimage_own_entry) so its own decompressor runs",
    }
}

/// Decodes `data`, a `codec` stream, into `sink`; returns the output size.
#[cfg(feature = "bzimage-payloads")]
fn decode_payload<E: From<PayloadError>>(
    codec: Codec,
    data: &[u8],
    limit: u64,
    sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    decode::decode(codec, data, limit, sink)
}

/// Without the decoders: every codec is [`PayloadError::NotBuilt`].
#[cfg(not(feature = "bzimage-payloads"))]
fn decode_payload<E: From<PayloadError>>(
    codec: Codec,
    _data: &[u8],
    _limit: u64,
    _sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    Err(PayloadError::NotBuilt { codec }.into())
}
