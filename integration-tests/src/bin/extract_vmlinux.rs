//! Writes the ELF vmlinux inside a bzImage (the payload the setup header
//! points to, decompressed with the VMM's own codecs) to a file, so other
//! VMMs can boot the same kernel through their ELF/PVH paths in the
//! boot-time comparison (integration-tests/scripts/boot-bench.py).
//!
//! Usage: extract_vmlinux BZIMAGE OUT

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: extract_vmlinux BZIMAGE OUT");
        std::process::exit(2);
    }
    let image = std::fs::read(&args[1]).unwrap_or_else(|e| {
        eprintln!("extract_vmlinux: reading {}: {e}", args[1]);
        std::process::exit(2);
    });
    // Setup header: setup_sects at 0x1f1 (0 means 4), payload_offset and
    // payload_length at 0x248, relative to the protected-mode code.
    let field = |off: usize| u32::from_le_bytes(image[off..off + 4].try_into().unwrap()) as usize;
    if image.len() < 0x250 || &image[0x202..0x206] != b"HdrS" {
        eprintln!("extract_vmlinux: {} is not a bzImage", args[1]);
        std::process::exit(2);
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + field(0x248);
    let payload = image.get(start..start + field(0x24c)).unwrap_or_else(|| {
        eprintln!("extract_vmlinux: payload outside the file");
        std::process::exit(2);
    });
    match vmm_core::loader::linux::payload::decompress(payload, 1 << 30) {
        Ok((codec, elf)) => {
            std::fs::write(&args[2], &elf).unwrap_or_else(|e| {
                eprintln!("extract_vmlinux: writing {}: {e}", args[2]);
                std::process::exit(2);
            });
            eprintln!(
                "extract_vmlinux: {codec:?} payload, {} bytes of vmlinux",
                elf.len()
            );
        }
        Err(e) => {
            eprintln!("extract_vmlinux: {e}");
            std::process::exit(2);
        }
    }
}
