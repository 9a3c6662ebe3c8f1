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

use std::fmt;
use std::io::Read;

use vmm_memory::guest_ram::{advise_huge_pages_in, HugePageBuffer};

/// Largest decompressed kernel accepted, whatever the guest's size: far
/// above any real vmlinux (about 60 MiB for a distribution kernel).
pub const MAX_DECOMPRESSED: u64 = 512 << 20;

/// The LZ4 legacy frame's per-chunk output size: the kernel's build (`lz4
/// -l`) compresses in 8 MiB chunks and its decoder assumes that size.
const LZ4_LEGACY_CHUNK: usize = 8 << 20;
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

/// Dictionary memory the LZMA/XZ decoders may allocate, in KiB. The
/// kernel's xz payloads use a 32 MiB dictionary and `lzma -9` 64 MiB; the
/// cap stops a crafted header from asking for gigabytes.
const LZMA_MEM_LIMIT_KIB: u32 = 256 << 10;

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
    let corrupt = |detail: String| PayloadError::Corrupt { codec, detail };
    let sink = &mut sink;
    let total = match codec {
        Codec::Gzip => stream_reader(codec, flate2::read::GzDecoder::new(data), limit, sink)?,
        Codec::Bzip2 => stream_reader(codec, bzip2::read::BzDecoder::new(data), limit, sink)?,
        Codec::Lzma => {
            let reader = lzma_rust2::LzmaReader::new_mem_limit(data, LZMA_MEM_LIMIT_KIB, None)
                .map_err(|e| corrupt(e.to_string()))?;
            stream_reader(codec, reader, limit, sink)?
        }
        Codec::Xz => stream_reader(
            codec,
            lzma_rust2::XzReader::new_mem_limit(data, false, LZMA_MEM_LIMIT_KIB),
            limit,
            sink,
        )?,
        Codec::Lzo => {
            return Err(PayloadError::Unsupported {
                codec,
                why: "no permissively licensed LZO1X decoder that is safe on corrupt input is available (lzokay-native panics on it; minilzo-rs, rust-lzo and lzo1x are GPL); rebuild the kernel with another CONFIG_KERNEL_* codec or use --bzimage-entry to let its own decompressor run",
            }
            .into())
        }
        Codec::Lz4 => lz4_legacy(data, limit, sink)?,
        Codec::Zstd => {
            let reader =
                ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| corrupt(e.to_string()))?;
            stream_reader(codec, reader, limit, sink)?
        }
    };
    if total == 0 {
        return Err(corrupt("it decompresses to nothing".to_string()).into());
    }
    Ok((codec, total))
}

/// The buffer pieces are decompressed into: one piece, with huge pages so
/// that first touching it costs a handful of page faults, not thousands.
fn piece_buffer() -> HugePageBuffer {
    HugePageBuffer::new(PIECE_SIZE)
}

/// Reads `reader` to its end in [`PIECE_SIZE`] pieces, failing once it
/// yields more than `limit` bytes.
fn stream_reader<E: From<PayloadError>>(
    codec: Codec,
    reader: impl Read,
    limit: u64,
    sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut reader = reader.take(limit.saturating_add(1));
    let mut buf = piece_buffer();
    let buf = buf.as_mut_slice();
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(PayloadError::Corrupt {
                        codec,
                        detail: e.to_string(),
                    }
                    .into())
                }
            }
        }
        total += filled as u64;
        if total > limit {
            return Err(PayloadError::TooLarge { codec, limit }.into());
        }
        if filled > 0 {
            sink(&buf[..filled])?;
        }
        if filled < buf.len() {
            return Ok(total);
        }
    }
}

/// The chunks of an LZ4 legacy frame, as the kernel's `unlz4` reads them:
/// the magic, then chunks of `[u32 LE compressed size][LZ4 block]`; the
/// magic may reappear between chunks (concatenated frames). The kernel's
/// build appends a u32 size trailer: four bytes left where a chunk would
/// start cannot be a chunk (it needs a size and at least one byte of data),
/// so they end the frame. Yields each block with its offset in `data`.
struct Lz4LegacyChunks<'a> {
    data: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Lz4LegacyChunks<'a> {
    fn new(data: &'a [u8]) -> Result<Self, PayloadError> {
        let rest =
            data.strip_prefix(&LZ4_LEGACY_MAGIC[..])
                .ok_or_else(|| PayloadError::Corrupt {
                    codec: Codec::Lz4,
                    detail: "no LZ4 legacy frame magic".to_string(),
                })?;
        Ok(Lz4LegacyChunks { data, rest })
    }
}

impl<'a> Iterator for Lz4LegacyChunks<'a> {
    type Item = Result<(usize, &'a [u8]), PayloadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.rest.len() > 4 {
            let (size_bytes, after) = self.rest.split_at(4);
            if size_bytes == LZ4_LEGACY_MAGIC {
                self.rest = after;
                continue;
            }
            let offset = self.data.len() - self.rest.len();
            let size =
                u32::from_le_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]])
                    as usize;
            if size == 0 || size > after.len() {
                self.rest = &[];
                return Some(Err(PayloadError::Corrupt {
                    codec: Codec::Lz4,
                    detail: format!(
                        "chunk at offset {offset:#x} claims {size} compressed bytes but {} remain",
                        after.len()
                    ),
                }));
            }
            let (block, next) = after.split_at(size);
            self.rest = next;
            return Some(Ok((offset, block)));
        }
        None
    }
}

/// Decodes one LZ4 legacy chunk into `buf` (at most 8 MiB, as the kernel's
/// decoder assumes).
fn lz4_chunk(offset: usize, block: &[u8], buf: &mut [u8]) -> Result<usize, PayloadError> {
    lz4_flex::block::decompress_into(block, buf).map_err(|e| PayloadError::Corrupt {
        codec: Codec::Lz4,
        detail: format!("chunk at offset {offset:#x}: {e}"),
    })
}

/// Decodes an LZ4 legacy frame ([`Lz4LegacyChunks`]), one piece per chunk.
///
/// Chunks are independent LZ4 blocks, so on a host with more than one CPU
/// they are decoded two at a time: a helper thread decodes the second of a
/// pair while this thread decodes the first and hands it on. Pieces still
/// reach `sink`, and errors are still reported, in stream order.
fn lz4_legacy<E: From<PayloadError>>(
    data: &[u8],
    limit: u64,
    sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let codec = Codec::Lz4;
    let mut chunks = Lz4LegacyChunks::new(data)?;
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let mut buf_a = piece_buffer();
    let mut buf_b: Option<HugePageBuffer> = None;
    let mut total = 0u64;
    let mut emit = |n: usize, piece: &[u8]| -> Result<(), E> {
        total += n as u64;
        if total > limit {
            return Err(PayloadError::TooLarge { codec, limit }.into());
        }
        sink(&piece[..n])
    };
    while let Some(first) = chunks.next() {
        let (offset_a, block_a) = first?;
        let second = if parallel { chunks.next() } else { None };
        let Some(second) = second else {
            let n = lz4_chunk(offset_a, block_a, buf_a.as_mut_slice())?;
            emit(n, buf_a.as_slice())?;
            continue;
        };
        let (offset_b, block_b) = match second {
            Ok(b) => b,
            Err(e) => {
                let n = lz4_chunk(offset_a, block_a, buf_a.as_mut_slice())?;
                emit(n, buf_a.as_slice())?;
                return Err(e.into());
            }
        };
        let b = buf_b.get_or_insert_with(piece_buffer);
        let a = &mut buf_a;
        let emit = &mut emit;
        // `None` for the second chunk: the helper could not be started.
        let (first_done, second): (Result<(), E>, Option<Result<usize, PayloadError>>) =
            std::thread::scope(|s| {
                let helper = std::thread::Builder::new()
                    .name("lz4-decode".to_string())
                    .spawn_scoped(s, || lz4_chunk(offset_b, block_b, b.as_mut_slice()));
                let first_done = lz4_chunk(offset_a, block_a, a.as_mut_slice())
                    .map_err(E::from)
                    .and_then(|n| emit(n, a.as_slice()));
                let second = helper.ok().map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(PayloadError::Corrupt {
                            codec,
                            detail: format!(
                                "the decoder of the chunk at offset {offset_b:#x} panicked"
                            ),
                        })
                    })
                });
                (first_done, second)
            });
        first_done?;
        let n = match second {
            Some(r) => r?,
            None => lz4_chunk(offset_b, block_b, b.as_mut_slice())?,
        };
        emit(n, b.as_slice())?;
    }
    if total == 0 {
        return Err(PayloadError::Corrupt {
            codec,
            detail: "the frame holds no chunk".to_string(),
        }
        .into());
    }
    Ok(total)
}

/// Builders of compressed payloads and bzImages for tests (this crate's and
/// the integration tests).
pub mod test_support {
    use std::io::Write;

    use super::{Codec, LZ4_LEGACY_MAGIC};

    /// `data` compressed with `codec` as the kernel's build does it (stream
    /// followed, except for gzip, by the uncompressed size as a u32), or
    /// `None` for codecs without an encoder here (lzo).
    pub fn compress(codec: Codec, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = match codec {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(data).ok()?;
                return e.finish().ok();
            }
            Codec::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                e.write_all(data).ok()?;
                e.finish().ok()?
            }
            Codec::Lzma => {
                let opts = lzma_rust2::LzmaOptions::with_preset(6);
                let mut w = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &opts, None).ok()?;
                w.write_all(data).ok()?;
                w.finish().ok()?
            }
            Codec::Xz => {
                // As scripts/xz_wrap.sh does for x86: the x86 BCJ filter
                // before LZMA2, CRC32 check.
                let mut opts = lzma_rust2::XzOptions::with_preset(6);
                opts.set_check_sum_type(lzma_rust2::CheckType::Crc32);
                opts.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
                let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).ok()?;
                w.write_all(data).ok()?;
                w.finish().ok()?
            }
            Codec::Lzo => return None,
            Codec::Lz4 => {
                let mut out = LZ4_LEGACY_MAGIC.to_vec();
                for chunk in data.chunks(super::LZ4_LEGACY_CHUNK) {
                    let block = lz4_flex::block::compress(chunk);
                    out.extend_from_slice(&u32::try_from(block.len()).ok()?.to_le_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Codec::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        };
        out.extend_from_slice(&u32::try_from(data.len()).ok()?.to_le_bytes());
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::compress;
    use super::*;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial: an ELF-like header and a pattern.
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        for i in 0..20_000u32 {
            v.extend_from_slice(&(i % 251).to_le_bytes()[..1]);
            if i % 7 == 0 {
                v.extend_from_slice(b"vmlinux");
            }
        }
        v
    }

    #[test]
    fn test_payload_magic_detection() {
        for c in Codec::ALL {
            let mut data = c.magic().to_vec();
            data.extend_from_slice(&[0; 8]);
            assert_eq!(Codec::detect(&data), Some(c), "{c}");
            assert_eq!(Codec::detect(&data[..c.magic().len() - 1]), None, "{c}");
        }
        assert_eq!(Codec::detect(b"\x7fELF"), None);
        assert_eq!(Codec::detect(b""), None);
        // "BZ" alone (no 'h') is not bzip2; "5d 00" without the third zero
        // is not the kernel's lzma.
        assert_eq!(Codec::detect(b"BZx"), None);
        assert_eq!(Codec::detect(&[0x5d, 0x00, 0x01]), None);
    }

    #[test]
    fn test_payload_round_trip_every_codec_with_an_encoder() {
        let data = sample();
        for c in Codec::ALL {
            let Some(packed) = compress(c, &data) else {
                assert_eq!(c, Codec::Lzo);
                continue;
            };
            assert_eq!(Codec::detect(&packed), Some(c), "{c}");
            assert!(packed.len() < data.len(), "{c} did not compress");
            let (codec, out) = decompress(&packed, 1 << 20).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(codec, c);
            assert_eq!(out, data, "{c}");
        }
    }

    #[test]
    fn test_payload_without_size_trailer_also_decodes() {
        let data = sample();
        for c in [
            Codec::Bzip2,
            Codec::Lzma,
            Codec::Xz,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let packed = compress(c, &data).unwrap();
            let bare = &packed[..packed.len() - 4];
            let (_, out) = decompress(bare, 1 << 20).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(out, data, "{c}");
        }
    }

    #[test]
    fn test_payload_lz4_multiple_chunks_and_repeated_magic() {
        let data: Vec<u8> = (0..(LZ4_LEGACY_CHUNK + 1000))
            .map(|i| (i / 3) as u8)
            .collect();
        let packed = compress(Codec::Lz4, &data).unwrap();
        let (_, out) = decompress(&packed, 64 << 20).unwrap();
        assert_eq!(out, data);
        // Two frames back to back decode to both contents.
        let small = sample();
        let one = compress(Codec::Lz4, &small).unwrap();
        let mut two = one[..one.len() - 4].to_vec();
        two.extend_from_slice(&one);
        let (_, out) = decompress(&two, 1 << 20).unwrap();
        assert_eq!(out.len(), 2 * small.len());
    }

    /// An LZ4 legacy frame of `data` in chunks of `chunk` bytes (the
    /// kernel's are 8 MiB; smaller ones are legal and make tests cheap).
    fn lz4_frame(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_vec();
        for c in data.chunks(chunk) {
            let block = lz4_flex::block::compress(c);
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    #[test]
    fn test_payload_streams_pieces_in_order_for_every_codec() {
        // Over one piece, so two are handed on. The reader-based codecs
        // share one loop: the quick encoders stand for the slow ones (the
        // round-trip test covers each codec).
        let data: Vec<u8> = (0..(PIECE_SIZE + 5000) as u32)
            .map(|i| (i / 4096 % 253) as u8)
            .collect();
        for c in [Codec::Gzip, Codec::Bzip2, Codec::Lz4] {
            let packed = compress(c, &data).unwrap();
            let mut got = Vec::new();
            let mut sizes = Vec::new();
            let (codec, total) = decompress_with(&packed, 64 << 20, |p: &[u8]| {
                sizes.push(p.len());
                got.extend_from_slice(p);
                Ok::<(), PayloadError>(())
            })
            .unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!((codec, total), (c, data.len() as u64));
            assert!(got == data, "{c}");
            assert_eq!(sizes, [PIECE_SIZE, 5000], "{c}");
        }
        // Odd and even numbers of small LZ4 chunks (pairs decode in
        // parallel): always in order.
        for chunk in [1000, 4096, 7000, 100_000] {
            let small = &data[..50_000];
            let mut got = Vec::new();
            decompress_with(&lz4_frame(small, chunk), 1 << 20, |p: &[u8]| {
                got.extend_from_slice(p);
                Ok::<(), PayloadError>(())
            })
            .unwrap();
            assert!(got == small, "chunk {chunk}");
        }
    }

    #[test]
    fn test_payload_stream_errors_come_in_stream_order() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 7) as u8).collect();
        let frame = lz4_frame(&data, 10_000);
        // Corrupt the third chunk's block: the first two pieces arrive, then
        // the error names the third chunk.
        let mut offsets = Vec::new();
        let mut at = 4;
        while at + 4 < frame.len() {
            offsets.push(at);
            let n = u32::from_le_bytes(frame[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + n;
        }
        assert_eq!(offsets.len(), 4);
        for (bad, chunk_at) in offsets.iter().enumerate() {
            let mut broken = frame.clone();
            // A match offset of zero is invalid: replace the block by one.
            let n = u32::from_le_bytes(broken[*chunk_at..chunk_at + 4].try_into().unwrap());
            let block = &mut broken[chunk_at + 4..chunk_at + 4 + n as usize];
            block.fill(0);
            block[0] = 0x0f;
            let mut pieces = 0;
            let e = decompress_with(&broken, 1 << 20, |_: &[u8]| {
                pieces += 1;
                Ok::<(), PayloadError>(())
            })
            .unwrap_err();
            assert_eq!(pieces, bad, "chunk {bad}");
            assert!(
                e.to_string()
                    .contains(&format!("chunk at offset {chunk_at:#x}")),
                "chunk {bad}: {e}"
            );
        }
        // A framing error after a good chunk, and the limit, are reported
        // after the pieces before them.
        let mut cut = frame.clone();
        cut.truncate(offsets[1] + 10);
        let mut pieces = 0;
        let e = decompress_with(&cut, 1 << 20, |_: &[u8]| {
            pieces += 1;
            Ok::<(), PayloadError>(())
        })
        .unwrap_err();
        assert_eq!(pieces, 1);
        assert!(e.to_string().contains("claims"), "{e}");
        let mut pieces = 0;
        let e = decompress_with(&frame, 25_000, |_: &[u8]| {
            pieces += 1;
            Ok::<(), PayloadError>(())
        })
        .unwrap_err();
        assert_eq!(pieces, 2);
        assert!(
            matches!(e, PayloadError::TooLarge { limit: 25_000, .. }),
            "{e}"
        );
        // The sink's error stops decompression at once.
        let mut pieces = 0;
        let e = decompress_with(&frame, 1 << 20, |_: &[u8]| {
            pieces += 1;
            Err(PayloadError::Corrupt {
                codec: Codec::Lz4,
                detail: "sink says stop".to_string(),
            })
        })
        .unwrap_err();
        assert_eq!(pieces, 1);
        assert!(e.to_string().contains("sink says stop"), "{e}");
    }

    #[test]
    fn test_payload_limit_is_enforced_for_every_codec() {
        let data = vec![0u8; 300_000];
        for c in Codec::ALL {
            let Some(packed) = compress(c, &data) else {
                continue;
            };
            let e = decompress(&packed, 100_000).unwrap_err();
            assert!(
                matches!(e, PayloadError::TooLarge { codec, limit: 100_000 } if codec == c),
                "{c}: {e}"
            );
            assert!(e.to_string().contains("100000"), "{e}");
        }
    }

    #[test]
    fn test_payload_corrupt_names_the_codec_and_never_panics() {
        let data = sample();
        for c in Codec::ALL {
            let Some(packed) = compress(c, &data) else {
                continue;
            };
            // Flip bytes inside the compressed data (header fields such as
            // gzip's OS byte are not integrity-checked), and truncate: each
            // must give an error naming the codec or, where the format has
            // no checksum, different output; never a panic.
            let n = packed.len();
            for (i, pos) in [n / 3, n / 2, 2 * n / 3].into_iter().enumerate() {
                let mut bad = packed.clone();
                bad[pos] ^= 0x5a + i as u8;
                match decompress(&bad, 1 << 20) {
                    Ok((_, out)) => assert!(out != data, "{c}: flip at {pos} unnoticed"),
                    Err(e) => assert!(e.to_string().contains(c.name()), "{c}: {e}"),
                }
            }
            let e = decompress(&packed[..packed.len() / 2], 1 << 20).unwrap_err();
            assert!(e.to_string().contains(c.name()), "{c}: {e}");
        }
    }

    #[test]
    fn test_payload_unknown_and_lzo_errors() {
        let e = decompress(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5], 1 << 20).unwrap_err();
        assert!(matches!(e, PayloadError::UnknownFormat { .. }));
        assert!(e.to_string().contains("de ad be ef 01 02 03 04"), "{e}");
        let e = decompress(b"", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let mut lzo = Codec::Lzo.magic().to_vec();
        lzo.extend_from_slice(&[0; 32]);
        let e = decompress(&lzo, 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                PayloadError::Unsupported {
                    codec: Codec::Lzo,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("lzo"), "{e}");
    }
}
