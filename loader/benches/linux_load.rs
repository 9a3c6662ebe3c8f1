//! How long loading a Linux bzImage takes, and where the time goes: the
//! payload decompression alone, the old whole-kernel `Vec` path, and the
//! whole `load_linux` into freshly mapped guest RAM with and without
//! transparent huge pages (first-touch page faults are a large share of
//! the cost, so every load gets new RAM; mapping and unmapping it are not
//! timed).
//!
//! `cargo bench -p vmm-loader --bench linux_load`. It loads
//! `target/debian-kernel/vmlinuz` (integration-tests/scripts/fetch-debian-kernel.sh)
//! when present, otherwise a synthetic LZ4 bzImage of about the same size.

use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use vmm_loader::elf::test_image::build;
use vmm_loader::linux::load_linux;
use vmm_loader::linux::payload::{decompress, decompress_with, PayloadError, MAX_DECOMPRESSED};
use vmm_loader::linux::test_image::{bzimage, compress, BzImageSpec, Codec};
use vmm_loader::LoadRequest;
use vmm_memory::guest_ram::{GuestRam, ThpHint};
use vmm_memory::MemoryLayout;

const RAM_MIB: u64 = 128;

/// A vmlinux-like ELF: 40 MiB in two segments at 16 MiB, compressible
/// about as well as a kernel (a quarter of the bytes random, the rest
/// repeats and zeroes), in an LZ4 bzImage.
fn synthetic() -> Option<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = vec![0u8; 40 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = match i % 16 {
            0..=3 => state as u8,
            4..=9 => (i >> 4) as u8,
            _ => 0,
        };
    }
    let (a, b) = data.split_at(24 << 20);
    let elf = build(
        true,
        0x100_0000,
        &[
            (0x100_0000, 0xffff_ffff_8100_0000, a, a.len() as u64),
            (0x280_0000, 0xffff_ffff_8280_0000, b, b.len() as u64),
        ],
    );
    Some(bzimage(
        &BzImageSpec::default(),
        &compress(Codec::Lz4, &elf)?,
    ))
}

fn kernel() -> Result<(String, Vec<u8>), Box<dyn Error>> {
    let debian = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian-kernel/vmlinuz");
    if debian.exists() {
        return Ok(("debian vmlinuz".to_string(), std::fs::read(debian)?));
    }
    let img = synthetic().ok_or("cannot build the synthetic bzImage")?;
    Ok(("synthetic lz4 bzImage".to_string(), img))
}

/// The payload of a bzImage, located as boot.rst says.
fn payload(image: &[u8]) -> Option<&[u8]> {
    let sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let field = |at: usize| -> Option<usize> {
        let b = image.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let start = (sects + 1) * 512 + field(0x248)?;
    image.get(start..start + field(0x24c)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let (name, image) = kernel()?;
    let data = payload(&image).ok_or("no payload")?;
    let layout = MemoryLayout::new(RAM_MIB)?;
    let limit = MAX_DECOMPRESSED.min(layout.size());
    let req = LoadRequest::default();
    // Fail loudly before timing anything.
    let ram = GuestRam::new(&layout, ThpHint::Off)?;
    load_linux(ram.memory(), &layout, &image, &req)?;
    drop(ram);

    let mut c = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    c.bench_function(&format!("{name}: decompress only"), |b| {
        b.iter(|| {
            decompress_with(black_box(data), limit, |p: &[u8]| {
                black_box(p);
                Ok::<(), PayloadError>(())
            })
        })
    });
    c.bench_function(&format!("{name}: decompress to a Vec"), |b| {
        b.iter(|| decompress(black_box(data), limit).map(|(_, v)| v.len()))
    });
    for (label, thp) in [("4 KiB pages", ThpHint::Off), ("THP", ThpHint::On)] {
        c.bench_function(&format!("{name}: load_linux, fresh RAM, {label}"), |b| {
            b.iter_batched(
                || GuestRam::new(&layout, thp).ok(),
                |ram| {
                    if let Some(ram) = &ram {
                        black_box(load_linux(ram.memory(), &layout, &image, &req).is_ok());
                    }
                    ram
                },
                BatchSize::PerIteration,
            )
        });
    }
    c.final_summary();
    Ok(())
}
