//! The payload decoders (the `bzimage-payloads` feature): a reader-based
//! loop for gzip, bzip2, LZMA, XZ and Zstandard, and the LZ4 legacy frame,
//! whose independent chunks are decoded two at a time.

use std::io::Read;

use vmm_memory::guest_ram::HugePageBuffer;

use super::{lzo_unsupported, Codec, PayloadError, LZ4_LEGACY_MAGIC, PIECE_SIZE};

/// Dictionary memory the LZMA/XZ decoders may allocate, in KiB. The
/// kernel's xz payloads use a 32 MiB dictionary and `lzma -9` 64 MiB; the
/// cap stops a crafted header from asking for gigabytes.
const LZMA_MEM_LIMIT_KIB: u32 = 256 << 10;

/// Decodes `data`, a `codec` stream (any codec but LZO), handing `sink`
/// pieces of at most [`PIECE_SIZE`] bytes; returns the output size.
pub(super) fn decode<E: From<PayloadError>>(
    codec: Codec,
    data: &[u8],
    limit: u64,
    sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let corrupt = |detail: String| PayloadError::Corrupt { codec, detail };
    match codec {
        Codec::Gzip => stream_reader(codec, flate2::read::GzDecoder::new(data), limit, sink),
        Codec::Bzip2 => stream_reader(codec, bzip2::read::BzDecoder::new(data), limit, sink),
        Codec::Lzma => {
            let reader = lzma_rust2::LzmaReader::new_mem_limit(data, LZMA_MEM_LIMIT_KIB, None)
                .map_err(|e| corrupt(e.to_string()))?;
            stream_reader(codec, reader, limit, sink)
        }
        Codec::Xz => stream_reader(
            codec,
            lzma_rust2::XzReader::new_mem_limit(data, false, LZMA_MEM_LIMIT_KIB),
            limit,
            sink,
        ),
        Codec::Lzo => Err(lzo_unsupported().into()),
        Codec::Lz4 => lz4_legacy(data, limit, sink),
        Codec::Zstd => {
            let reader = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| corrupt(e.to_string()))?;
            stream_reader(codec, reader, limit, sink)
        }
    }
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
