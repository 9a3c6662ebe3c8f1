//! A bzImage's payload decompressed on the host: straight into guest
//! memory as it streams, or (with the kernel cache) into a cache entry
//! whose pages are then mapped into guest memory.

use std::time::Instant;

use vm_memory::GuestMemoryBackend;
use vmm_memory::MemoryLayout;

#[cfg(feature = "bzimage-payloads")]
use super::cache::{CachedVmlinux, ImageKey, VmlinuxCache};
use super::payload::{self, Codec};
use super::setup_header::BzImageHeader;
use super::vmlinux::{Placing, VmlinuxLoader};
#[cfg(feature = "bzimage-payloads")]
use super::vmlinux_file;
use super::{max_vmlinux_len, LinuxError, LoadedKernel};
use crate::request::KernelCacheUse;

/// Loads the payload of the bzImage `image` (whose header is `bz`)
/// decompressed on the host, through the kernel cache as `kernel_cache`
/// says: from a hit's entry, through a new entry, or straight into guest
/// memory.
pub(super) fn load_host_decompressed<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    bz: &BzImageHeader,
    kernel_cache: &KernelCacheUse,
) -> Result<LoadedKernel, LinuxError> {
    match kernel_cache {
        #[cfg(feature = "bzimage-payloads")]
        KernelCacheUse::Hit(entry) => load_cached(mem, layout, entry),
        #[cfg(feature = "bzimage-payloads")]
        KernelCacheUse::Fill { cache, key } => {
            let range = bz.payload_range(image.len())?;
            fill_cache(mem, layout, &image[range], cache, key)
        }
        KernelCacheUse::Off => {
            let range = bz.payload_range(image.len())?;
            load_payload(mem, layout, &image[range])
        }
    }
}

/// Decompresses a bzImage's payload, a vmlinux, straight into guest memory
/// ([`vmlinux`]), never holding the whole decompressed kernel.
fn load_payload<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    data: &[u8],
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let mut loader = VmlinuxLoader::new(mem, layout, payload_what(data), Placing::Copy);
    let limit = max_vmlinux_len(layout);
    let (codec, size) = payload::decompress_with(data, limit, |piece| loader.feed(piece))?;
    let (kernel, writing) = loader.finish()?;
    let total = t.elapsed();
    log::info!("bzImage payload: {codec}, {size} bytes decompressed on the host");
    log::debug!(
        "bzImage payload: decompressed and loaded in {:.1} ms ({:.1} ms decompressing, {:.1} ms writing guest memory)",
        total.as_secs_f64() * 1e3,
        total.saturating_sub(writing).as_secs_f64() * 1e3,
        writing.as_secs_f64() * 1e3
    );
    Ok(kernel)
}

/// Loads a kernel cache entry, mapping its pages into guest memory.
#[cfg(feature = "bzimage-payloads")]
fn load_cached<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    entry: &CachedVmlinux,
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let what = format!("cached vmlinux {}", entry.path().display());
    let (kernel, done) =
        vmlinux_file::load_from_file(mem, layout, entry.file(), entry.len(), &what)?;
    log::info!(
        "bzImage payload: from the kernel cache ({}), {} bytes mapped, {} copied, in {:.2} ms",
        entry.path().display(),
        done.mapped,
        done.copied,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(kernel)
}

/// Decompresses a bzImage's payload into a new kernel cache entry while
/// validating it as a vmlinux, then loads from the entry. If the entry
/// cannot be written, decompresses straight into guest memory instead.
#[cfg(feature = "bzimage-payloads")]
fn fill_cache<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    data: &[u8],
    cache: &VmlinuxCache,
    key: &ImageKey,
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let cache_failed = |e: std::io::Error| {
        log::warn!(
            "kernel cache: cannot write to {}: {e}; decompressing without it",
            cache.dir().display()
        );
    };
    let mut writer = match cache.begin(key) {
        Ok(w) => w,
        Err(e) => {
            cache_failed(e);
            return load_payload(mem, layout, data);
        }
    };
    let mut check = VmlinuxLoader::new(mem, layout, payload_what(data), Placing::ValidateOnly);
    let mut write_failed = None;
    let limit = max_vmlinux_len(layout);
    let (codec, size) = payload::decompress_with(data, limit, |piece| {
        check.feed(piece)?;
        if write_failed.is_none() {
            write_failed = writer.write(piece).err();
        }
        Ok::<(), LinuxError>(())
    })?;
    check.finish()?;
    let entry = match write_failed.map_or_else(|| writer.commit(), Err) {
        Ok(entry) => entry,
        Err(e) => {
            cache_failed(e);
            return load_payload(mem, layout, data);
        }
    };
    log::info!(
        "bzImage payload: {codec}, {size} bytes decompressed on the host into the kernel cache ({}) in {:.1} ms",
        entry.path().display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    load_cached(mem, layout, &entry)
}

/// How errors name a bzImage's payload.
fn payload_what(data: &[u8]) -> String {
    match Codec::detect(data) {
        Some(c) => format!("{c}-decompressed bzImage payload"),
        None => "bzImage payload".to_string(),
    }
}
