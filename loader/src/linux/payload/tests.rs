#[cfg(feature = "bzimage-payloads")]
use super::test_support::compress;
use super::*;

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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
#[cfg(feature = "bzimage-payloads")]
fn lz4_frame(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = LZ4_LEGACY_MAGIC.to_vec();
    for c in data.chunks(chunk) {
        let block = lz4_flex::block::compress(c);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(feature = "bzimage-payloads")]
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

#[cfg(not(feature = "bzimage-payloads"))]
#[test]
fn test_payload_without_the_feature_names_codec_and_feature() {
    for c in Codec::ALL.into_iter().filter(|&c| c != Codec::Lzo) {
        let mut data = c.magic().to_vec();
        data.extend_from_slice(&[0; 32]);
        let e = decompress(&data, 1 << 20).unwrap_err();
        assert!(
            matches!(e, PayloadError::NotBuilt { codec } if codec == c),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(c.name()) && msg.contains("bzimage-payloads"),
            "{msg}"
        );
    }
}
