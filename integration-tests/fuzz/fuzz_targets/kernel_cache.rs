//! The kernel cache against decompression: the same vmlinux bytes loaded
//! three ways must give the same result. Input: a candidate vmlinux (any
//! bytes). It is gzip-compressed into a bzImage and loaded
//! - straight from the payload into guest RAM (no cache),
//! - through a cache fill (decompressed into an entry, then mapped),
//! - from that entry on a hit, with only the bzImage's setup part in hand.
//!
//! All three must fail or succeed together; when they succeed, the boot
//! specs and every byte of guest memory must be equal. Never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_loader::linux::cache::{ImageKey, VmlinuxCache};
use vmm_loader::linux::load_linux;
use vmm_loader::linux::test_image::{bzimage, compress, BzImageSpec, Codec};
use vmm_loader::{BootSpec, KernelCacheUse, LoadRequest};
use vmm_memory::MemoryLayout;

/// Guest RAM for each load: small, so comparing it stays fast.
const MEM_MIB: u64 = 4;

/// A cache directory for this process, and a key (any file's will do: the
/// key only names the entry).
fn cache() -> &'static (VmlinuxCache, ImageKey) {
    static CACHE: OnceLock<(VmlinuxCache, ImageKey)> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("vmm-fuzz-kernel-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let meta =
            std::fs::metadata(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/")))
                .or_else(|_| std::fs::metadata("/"))
                .expect("metadata of the fuzzer or /");
        (VmlinuxCache::new(dir), ImageKey::of(&meta))
    })
}

fn load(image: &[u8], kernel_cache: KernelCacheUse) -> (Result<BootSpec, String>, Vec<u8>) {
    let layout = MemoryLayout::with_phys_bits(MEM_MIB, 40).expect("layout");
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (MEM_MIB << 20) as usize)])
        .expect("guest memory");
    let req = LoadRequest {
        kernel_path: "fuzz".into(),
        cmdline: Some("console=ttyS0".into()),
        kernel_cache,
        ..Default::default()
    };
    let spec = load_linux(&mem, &layout, image, &req).map_err(|e| e.to_string());
    let mut all = vec![0u8; (MEM_MIB << 20) as usize];
    mem.read_slice(&mut all, GuestAddress(0))
        .expect("read guest memory");
    (spec, all)
}

fuzz_target!(|vmlinux: &[u8]| {
    let Some(payload) = compress(Codec::Gzip, vmlinux) else {
        return;
    };
    let img = bzimage(&BzImageSpec::default(), &payload);
    let setup_len = (usize::from(img[0x1f1]) + 1) * 512;
    let (cache, key) = cache();

    let (direct, direct_mem) = load(&img, KernelCacheUse::Off);
    let fill = KernelCacheUse::Fill {
        cache: cache.clone(),
        key: *key,
    };
    let (filled, filled_mem) = load(&img, fill);
    assert_eq!(
        direct.is_ok(),
        filled.is_ok(),
        "direct {direct:?} vs fill {filled:?}"
    );
    let Ok(want) = direct else {
        return;
    };
    assert_eq!(filled.as_ref().ok(), Some(&want));
    assert!(
        filled_mem == direct_mem,
        "fill loaded different guest memory"
    );

    let entry = cache
        .lookup(key)
        .expect("a successful fill leaves an entry");
    let (hit, hit_mem) = load(&img[..setup_len], KernelCacheUse::Hit(entry));
    assert_eq!(hit.as_ref().ok(), Some(&want), "hit: {hit:?}");
    assert!(hit_mem == direct_mem, "hit loaded different guest memory");
});
