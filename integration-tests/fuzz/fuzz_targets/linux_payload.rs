//! A bzImage's compressed payload on its own: codec detection and every
//! decoder (gzip, bzip2, lzma, xz, lz4 legacy frames, zstd; lzo is refused)
//! behind the loader's output cap. Input: byte 0 picks the cap (2^(b % 25)
//! bytes, up to 16 MiB), the rest is the payload. Must never panic, and a
//! decoded payload is never empty nor over the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_loader::linux::payload::{decompress, Codec};

fuzz_target!(|data: &[u8]| {
    let Some((&cap, payload)) = data.split_first() else {
        return;
    };
    let limit = 1u64 << (cap % 25);
    if let Ok((codec, out)) = decompress(payload, limit) {
        assert_eq!(Some(codec), Codec::detect(payload));
        assert!(!out.is_empty());
        assert!(out.len() as u64 <= limit, "{} > {limit}", out.len());
    }
});
