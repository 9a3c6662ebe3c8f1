//! Builders of compressed payloads for tests (this crate's and the
//! integration tests): the kernel build's encodings, with the encoders of
//! the `bzimage-payloads` codecs.

use std::io::Write;

use super::{Codec, LZ4_LEGACY_CHUNK, LZ4_LEGACY_MAGIC};

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
            for chunk in data.chunks(LZ4_LEGACY_CHUNK) {
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
