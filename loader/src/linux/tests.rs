#[cfg(feature = "bzimage-payloads")]
use super::payload::{Codec, PayloadError};
#[cfg(feature = "bzimage-payloads")]
use super::test_image::compress;
use super::test_image::{bzimage, BzImageSpec};
use super::*;
use crate::elf::test_image::build;
#[cfg(feature = "bzimage-payloads")]
use crate::elf::ElfError;
#[cfg(feature = "bzimage-payloads")]
use crate::linux::cache::{ImageKey, VmlinuxCache};
#[cfg(feature = "bzimage-payloads")]
use crate::request::KernelCacheUse;
use crate::request::ModuleImage;
use linux_loader::loader::bootparam::boot_params;
#[cfg(feature = "bzimage-payloads")]
use std::os::unix::fs::FileExt;
#[cfg(feature = "bzimage-payloads")]
use vm_memory::ByteValued;
use vm_memory::GuestMemoryMmap;
use vmm_memory::layout::MIB;

const MEM_MIB: u64 = 64;

fn setup() -> (MemoryLayout, GuestMemoryMmap) {
    let layout = MemoryLayout::with_phys_bits(MEM_MIB, 40).unwrap();
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (MEM_MIB * MIB) as usize)]).unwrap();
    (layout, mem)
}

/// A tiny vmlinux: code at 1 MiB, 64 KiB of memory in all.
fn vmlinux() -> Vec<u8> {
    build(
        true,
        0x10_0010,
        &[(0x10_0000, 0x10_0000, &[0xf4; 0x40], 0x1_0000)],
    )
}

fn zero_page(mem: &GuestMemoryMmap) -> boot_params {
    mem.read_obj(ZERO_PAGE_START).unwrap()
}

fn cmdline_at(mem: &GuestMemoryMmap, p: &boot_params) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    mem.read_slice(&mut buf, GuestAddress(u64::from(p.hdr.cmd_line_ptr)))
        .unwrap();
    let nul = buf.iter().position(|&b| b == 0).unwrap();
    buf.truncate(nul);
    buf
}

fn req(cmdline: Option<&str>, initrd: Option<Vec<u8>>) -> LoadRequest {
    LoadRequest {
        kernel_path: "vmlinux".into(),
        cmdline: cmdline.map(str::to_string),
        initrd: initrd.map(|data| ModuleImage {
            name: "initrd".into(),
            data,
        }),
        ..Default::default()
    }
}

/// The zero page's E820 table is the boot plan's memory map, which
/// reserves the zero page, the command line, the GDT and the page tables.
fn check_e820(p: &boot_params, spec: &BootSpec, layout: &MemoryLayout) {
    let map = spec.plan.memory_map(layout);
    for s in [
        Structure::ZeroPage,
        Structure::Cmdline,
        Structure::Gdt,
        Structure::PageTables,
    ] {
        let at = spec.plan.get(s).unwrap();
        assert!(
            map.iter().any(|e| e.kind == vmm_memory::MapKind::Reserved
                && e.start <= at.start
                && at.end() <= e.start + e.len),
            "{s} not reserved in {map:?}"
        );
    }
    assert_eq!(usize::from(p.e820_entries), map.len());
    for (t, e) in p.e820_table.iter().zip(&map) {
        assert_eq!(
            ({ t.addr }, { t.size }, { t.r#type }),
            (e.start, e.len, e.kind.e820_type())
        );
    }
}

#[test]
fn test_linux_vmlinux_boot_params() {
    let (layout, mem) = setup();
    let rd: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let spec = load_linux(
        &mem,
        &layout,
        &vmlinux(),
        &req(Some("console=ttyS0 root=/dev/ram0"), Some(rd.clone())),
    )
    .unwrap();
    assert_eq!(spec.mode, BootMode::Long);
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0010)));
    assert_eq!(spec.handoff, Handoff::LinuxZeroPage(ZERO_PAGE_START));
    assert_eq!(spec.image, (GuestAddress(0x10_0000), 0x1_0000));
    let mut code = [0u8; 4];
    mem.read_slice(&mut code, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(code, [0xf4; 4]);

    let p = zero_page(&mem);
    assert_eq!({ p.hdr.boot_flag }, 0xaa55);
    assert_eq!({ p.hdr.header }, HDRS);
    assert_eq!({ p.hdr.type_of_loader }, 0xff);
    assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START.0 as u32);
    assert_eq!(cmdline_at(&mem, &p), b"console=ttyS0 root=/dev/ram0");
    check_e820(&p, &spec, &layout);
    let (addr, size) = (u64::from(p.hdr.ramdisk_image), p.hdr.ramdisk_size);
    assert_eq!(size as usize, rd.len());
    assert_eq!(addr % 4096, 0);
    assert_eq!(addr, (MEM_MIB * MIB - rd.len() as u64) & !0xfff);
    let mut back = vec![0u8; rd.len()];
    mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
    assert_eq!(back, rd);
}

#[test]
fn test_linux_default_cmdline_and_no_initrd() {
    let (layout, mem) = setup();
    load_linux(&mem, &layout, &vmlinux(), &req(None, None)).unwrap();
    let p = zero_page(&mem);
    assert_eq!(cmdline_at(&mem, &p), DEFAULT_CMDLINE.as_bytes());
    assert!(DEFAULT_CMDLINE.contains("console=ttyS0"));
    assert_eq!(({ p.hdr.ramdisk_image }, { p.hdr.ramdisk_size }), (0, 0));
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_bzimage_every_codec_host_decompressed() {
    let elf = vmlinux();
    for codec in Codec::ALL {
        let Some(payload) = compress(codec, &elf) else {
            continue;
        };
        let (layout, mem) = setup();
        let img = bzimage(&BzImageSpec::default(), &payload);
        let spec = load_linux(&mem, &layout, &img, &req(Some("quiet"), Some(vec![1; 10])))
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(
            spec.entry,
            Entry::Linear(GuestAddress(0x10_0010)),
            "{codec}"
        );
        let p = zero_page(&mem);
        // The header is the image's, with the loader's fields written.
        let hdr_end = 0x26c;
        let mut expect = img[0x1f1..hdr_end].to_vec();
        expect[0x210 - 0x1f1] = 0xff;
        expect[0x218 - 0x1f1..0x21c - 0x1f1]
            .copy_from_slice(&{ p.hdr.ramdisk_image }.to_le_bytes());
        expect[0x21c - 0x1f1..0x220 - 0x1f1].copy_from_slice(&10u32.to_le_bytes());
        expect[0x228 - 0x1f1..0x22c - 0x1f1]
            .copy_from_slice(&(CMDLINE_START.0 as u32).to_le_bytes());
        assert_eq!(&p.as_slice()[0x1f1..hdr_end], &expect[..], "{codec}");
        assert_eq!(cmdline_at(&mem, &p), b"quiet");
        check_e820(&p, &spec, &layout);
    }
}

#[cfg(feature = "bzimage-payloads")]
/// A vmlinux whose segments sit at page-congruent file offsets, as a
/// real one's do: one with ragged ends and BSS, one starting mid-page.
fn paged_vmlinux() -> Vec<u8> {
    let fill = |from: u64, len: u64| -> Vec<u8> {
        (from..from + len)
            .map(|b| (b * 13 + b / 4096) as u8 | 1)
            .collect()
    };
    let (a, b) = (fill(0, 0x5123), fill(7, 0x3000));
    crate::elf::test_image::build_paged(
        true,
        0x20_0000,
        &[
            (0x20_0000, 0x20_0000, &a, 0x8000),
            (0x30_0800, 0x30_0800, &b, 0x3000),
        ],
    )
}

#[cfg(feature = "bzimage-payloads")]
fn temp_cache(tag: &str) -> VmlinuxCache {
    let dir = std::env::temp_dir().join(format!(
        "vmm-loader-linux-cache-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    VmlinuxCache::new(dir)
}

#[cfg(feature = "bzimage-payloads")]
fn all_of(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut buf = vec![0u8; (MEM_MIB * MIB) as usize];
    mem.read_slice(&mut buf, GuestAddress(0)).unwrap();
    buf
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_kernel_cache_fill_and_hit_load_what_decompression_loads() {
    let elf = paged_vmlinux();
    let key = ImageKey::of(&std::fs::metadata(std::env::current_exe().unwrap()).unwrap());
    for codec in Codec::ALL {
        let Some(payload) = compress(codec, &elf) else {
            continue;
        };
        let cache = temp_cache(codec.name());
        let img = bzimage(&BzImageSpec::default(), &payload);
        let setup_len = (usize::from(img[0x1f1]) + 1) * 512;
        let mut r = req(Some("quiet"), Some(vec![3; 5000]));
        let (layout, direct) = setup();
        let want = load_linux(&direct, &layout, &img, &r).unwrap();

        r.kernel_cache = KernelCacheUse::Fill {
            cache: cache.clone(),
            key,
        };
        let (_, filled) = setup();
        assert_eq!(load_linux(&filled, &layout, &img, &r).unwrap(), want);
        assert!(all_of(&filled) == all_of(&direct), "{codec}: fill");

        let hit = cache.lookup(&key).expect("the fill wrote an entry");
        let mut on_disk = vec![0u8; elf.len()];
        hit.file().read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, elf, "{codec}: the entry is the vmlinux");
        r.kernel_cache = KernelCacheUse::Hit(hit.clone());
        let (_, from_cache) = setup();
        // Only the setup part: the payload is never read on a hit.
        let spec = load_linux(&from_cache, &layout, &img[..setup_len], &r).unwrap();
        assert_eq!(spec, want);
        assert!(all_of(&from_cache) == all_of(&direct), "{codec}: hit");

        // The guest's writes to mapped pages stay in its memory.
        from_cache
            .write_slice(&[0u8; 0x3000], GuestAddress(0x20_1000))
            .unwrap();
        hit.file().read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, elf, "{codec}: guest writes reached the entry");
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_cached_vmlinux_maps_aligned_pages_and_copies_the_rest() {
    let elf = paged_vmlinux();
    let cache = temp_cache("map");
    let key = ImageKey::of(&std::fs::metadata(std::env::current_exe().unwrap()).unwrap());
    let mut w = cache.begin(&key).unwrap();
    w.write(&elf).unwrap();
    let entry = w.commit().unwrap();
    let (layout, mem) = setup();
    let (kernel, done) =
        vmlinux_file::load_from_file(&mem, &layout, entry.file(), entry.len(), "entry").unwrap();
    assert_eq!(kernel.entry, 0x20_0000);
    // Segment 0: pages 0x200000..0x205000 mapped, 0x123 copied; segment
    // 1: 0x800 copied up to its first page, 0x2000 mapped, 0x800 copied.
    assert_eq!(done.mapped, 0x5000 + 0x2000);
    assert_eq!(done.copied, 0x123 + 0x800 + 0x800);
    let mut seg = vec![0u8; 0x8000];
    mem.read_slice(&mut seg, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(
        &seg[..0x5123],
        &elf[0x1000..0x6123],
        "segment 0 at offset 0x1000"
    );
    assert!(seg[0x5123..].iter().all(|&b| b == 0), "BSS is zero");
    let mut seg = vec![0u8; 0x3000];
    mem.read_slice(&mut seg, GuestAddress(0x30_0800)).unwrap();
    assert_eq!(&seg[..], &elf[0x6800..0x9800], "segment 1 at offset 0x6800");

    // Validated against this layout, like any vmlinux: 2 MiB of RAM
    // cannot hold it.
    let small = MemoryLayout::with_phys_bits(2, 40).unwrap();
    let err =
        vmlinux_file::load_from_file(&mem, &small, entry.file(), entry.len(), "entry").unwrap_err();
    assert!(
        matches!(
            err,
            LinuxError::Vmlinux(ElfError::SegmentOutsideRam { .. })
                | LinuxError::KernelOutsideRam { .. }
        ),
        "{err}"
    );
    // An entry that is not a vmlinux is named in the error.
    let mut w = cache.begin(&key).unwrap();
    w.write(b"MZ not an elf").unwrap();
    let junk = w.commit().unwrap();
    let err =
        vmlinux_file::load_from_file(&mem, &layout, junk.file(), junk.len(), "cached vmlinux x")
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("cached vmlinux x is not an ELF vmlinux"),
        "{err}"
    );
    std::fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn test_linux_bzimage_own_entry() {
    let (layout, mem) = setup();
    let mut pm = vec![0x90u8; 0x200];
    pm.extend_from_slice(&[0xf4, 0xeb, 0xfe]);
    let spec_hdr = BzImageSpec {
        pm_code: pm.clone(),
        pref_address: 0x20_0000,
        init_size: 0x40_0000,
        ..Default::default()
    };
    let img = bzimage(&spec_hdr, b"not even compressed");
    let r = LoadRequest {
        bzimage_own_entry: true,
        ..req(None, Some(vec![7; 100]))
    };
    let spec = load_linux(&mem, &layout, &img, &r).unwrap();
    assert_eq!(spec.mode, BootMode::Long);
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x20_0200)));
    let mut back = vec![0u8; pm.len()];
    mem.read_slice(&mut back, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(back, pm);
    let p = zero_page(&mem);
    assert_eq!({ p.hdr.code32_start }, 0x20_0000);
    // The initrd stays clear of init_size above the kernel.
    assert!(u64::from(p.hdr.ramdisk_image) >= 0x60_0000);

    // init_size beyond RAM is refused.
    let huge = bzimage(
        &BzImageSpec {
            init_size: 0x1000_0000,
            ..spec_hdr.clone()
        },
        b"x",
    );
    let e = load_linux(&mem, &layout, &huge, &r).unwrap_err();
    assert!(matches!(e, LinuxError::KernelOutsideRam { .. }), "{e}");
    // Before 2.12 there is no XLF_KERNEL_64 to trust.
    let old = bzimage(
        &BzImageSpec {
            version: 0x020b,
            ..spec_hdr
        },
        b"x",
    );
    let e = load_linux(&mem, &layout, &old, &r).unwrap_err();
    assert!(
        e.to_string().contains("2.11") && e.to_string().contains("2.12"),
        "{e}"
    );
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_bad_inputs_are_errors() {
    let (layout, mem) = setup();
    let elf = vmlinux();
    let gz = compress(Codec::Gzip, &elf).unwrap();
    let spec = BzImageSpec::default();
    let load = |img: &[u8], r: &LoadRequest| load_linux(&mem, &layout, img, r);

    // Protocol 2.05.
    let old = bzimage(
        &BzImageSpec {
            version: 0x0205,
            ..spec.clone()
        },
        &gz,
    );
    let e = load(&old, &req(None, None)).unwrap_err();
    assert!(
        matches!(
            e,
            LinuxError::ProtocolTooOld {
                version: 0x0205,
                ..
            }
        ),
        "{e}"
    );

    // Not 64-bit.
    let k32 = bzimage(
        &BzImageSpec {
            xloadflags: 0,
            ..spec.clone()
        },
        &gz,
    );
    assert!(matches!(
        load(&k32, &req(None, None)),
        Err(LinuxError::Not64Bit(0))
    ));

    // Unknown codec.
    let e = load(&bzimage(&spec, b"\x01\x02\x03\x04junk"), &req(None, None)).unwrap_err();
    assert!(e.to_string().contains("01 02 03 04"), "{e}");

    // Corrupt gzip.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let e = load(&bzimage(&spec, &bad), &req(None, None)).unwrap_err();
    assert!(e.to_string().contains("gzip"), "{e}");

    // Payload past the end of the file.
    let mut cut = bzimage(&spec, &gz);
    cut.truncate(cut.len() - 1);
    assert!(matches!(
        load(&cut, &req(None, None)),
        Err(LinuxError::PayloadOutsideFile { .. })
    ));

    // A payload that is not an ELF.
    let e = load(
        &bzimage(&spec, &compress(Codec::Zstd, b"MZ not an elf").unwrap()),
        &req(None, None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("zstd-decompressed"), "{e}");

    // Truncated vmlinux, bare and inside a bzImage.
    let e = load(&elf[..elf.len() - 8], &req(None, None)).unwrap_err();
    assert!(matches!(e, LinuxError::Vmlinux(_)), "{e}");
    let short = compress(Codec::Gzip, &elf[..100]).unwrap();
    let e = load(&bzimage(&spec, &short), &req(None, None)).unwrap_err();
    assert!(matches!(e, LinuxError::Vmlinux(_)), "{e}");

    // ELF32 vmlinux.
    let e32 = build(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0xf4], 1)]);
    assert!(matches!(
        load(&e32, &req(None, None)),
        Err(LinuxError::NotX86_64 { class: 32, .. })
    ));

    // Command line longer than cmdline_size.
    let small = bzimage(
        &BzImageSpec {
            cmdline_size: 16,
            ..spec.clone()
        },
        &gz,
    );
    let e = load(&small, &req(Some(&"x".repeat(17)), None)).unwrap_err();
    assert!(
        matches!(e, LinuxError::CmdlineTooLong { len: 17, max: 16 }),
        "{e}"
    );
    assert!(load(&small, &req(Some(&"x".repeat(16)), None)).is_ok());

    // An initrd larger than the room above the kernel.
    let e = load(&elf, &req(None, Some(vec![0; (MEM_MIB * MIB) as usize]))).unwrap_err();
    assert!(e.to_string().contains(&(MEM_MIB * MIB).to_string()), "{e}");

    // Modules are not part of the Linux protocol.
    let with_module = LoadRequest {
        modules: vec![ModuleImage {
            name: "m".into(),
            data: vec![1],
        }],
        ..req(None, None)
    };
    assert!(matches!(
        load(&elf, &with_module),
        Err(LinuxError::ModulesUnsupported(1))
    ));

    // Neither bzImage nor ELF.
    assert!(matches!(
        load(b"\xf4\xf4", &req(None, None)),
        Err(LinuxError::NotLinux(_))
    ));
}

#[test]
fn test_linux_vmlinux_above_4g_is_refused() {
    // The identity map covers only 4 GiB: a kernel in the RAM above the
    // hole could not run.
    let layout = MemoryLayout::with_phys_bits(3072 + 64, 40).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 3 << 30),
        (GuestAddress(4 << 30), 64 << 20),
    ])
    .unwrap();
    let high = build(
        true,
        0x1_0000_0000,
        &[(0x1_0000_0000, 0x1_0000_0000, &[0xf4], 1)],
    );
    let e = load_linux(&mem, &layout, &high, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(e, LinuxError::KernelOutsideRam { start: 0x1_0000_0000, ram_end, .. } if ram_end == 3 << 30),
        "{e}"
    );
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_decompression_limit_is_guest_ram() {
    let layout = MemoryLayout::with_phys_bits(2, 40).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    let big = vec![0u8; 3 << 20];
    let img = bzimage(
        &BzImageSpec::default(),
        &compress(Codec::Gzip, &big).unwrap(),
    );
    let e = load_linux(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(e, LinuxError::Payload(PayloadError::TooLarge { limit, .. }) if limit == 2 << 20),
        "{e}"
    );
}

#[cfg(feature = "bzimage-payloads")]
#[test]
fn test_linux_initrd_respects_initrd_addr_max_and_mem() {
    let (layout, mem) = setup();
    let img = bzimage(
        &BzImageSpec {
            initrd_addr_max: (16 * MIB - 1) as u32,
            ..Default::default()
        },
        &compress(Codec::Gzip, &vmlinux()).unwrap(),
    );
    load_linux(&mem, &layout, &img, &req(None, Some(vec![3; 4096]))).unwrap();
    assert_eq!(
        u64::from(zero_page(&mem).hdr.ramdisk_image),
        16 * MIB - 4096
    );
    load_linux(
        &mem,
        &layout,
        &img,
        &req(Some("mem=8M"), Some(vec![3; 4096])),
    )
    .unwrap();
    assert_eq!(u64::from(zero_page(&mem).hdr.ramdisk_image), 8 * MIB - 4096);
}
