use super::info::{
    INFO_BOOT_LOADER_NAME, INFO_CMDLINE, INFO_MEMORY, INFO_MEM_MAP, INFO_MODS, MODULE_ALIGN,
};
use super::test_image::{header, AOUT_KLUDGE};
use super::*;
use crate::elf::test_image::build;
use crate::request::ModuleImage;
use vm_memory::GuestMemoryMmap;
use vmm_memory::layout::{BOOT_INFO_START, CMDLINE_START};
use vmm_memory::{FirmwareSizes, MapKind, PlanError, Structure};

fn setup() -> (MemoryLayout, GuestMemoryMmap) {
    let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    (layout, mem)
}

fn u32_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn u64_at(mem: &GuestMemoryMmap, addr: u64) -> u64 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn bytes_at(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn cstr_at(mem: &GuestMemoryMmap, addr: u64) -> String {
    let mut out = Vec::new();
    for a in addr.. {
        let b: u8 = mem.read_obj(GuestAddress(a)).unwrap();
        if b == 0 {
            break;
        }
        out.push(b);
    }
    String::from_utf8(out).unwrap()
}

fn module(name: &str, data: Vec<u8>) -> ModuleImage {
    ModuleImage {
        name: name.into(),
        data,
    }
}

/// An a.out-kludge kernel: 0x20 bytes of junk the loader must skip,
/// then the loaded part (a 0x10-byte marker, the header, 0x100 bytes of
/// 0xf4) loaded at 1 MiB, then 0x10 bytes of junk past load_end_addr;
/// BSS to load_end + 0x345.
fn aout_kernel(flags: u32) -> Vec<u8> {
    let load = 0x10_0000u32;
    let loaded_len = 0x10 + 32 + 0x100;
    let load_end = load + loaded_len;
    let mut img = vec![0xee; 0x20];
    img.extend_from_slice(b"loaded-from-here");
    img.extend(header(
        flags | AOUT_KLUDGE,
        &[load + 0x10, load, load_end, load_end + 0x345, load + 0x30],
    ));
    img.extend([0xf4; 0x100]);
    img.extend([0xee; 0x10]);
    img
}

fn full_request() -> LoadRequest {
    LoadRequest {
        kernel_path: "/boot/kernel.mb".into(),
        cmdline: Some("console=ttyS0 debug".into()),
        initrd: Some(module(
            "/boot/initrd.img",
            (0..5000u32).map(|i| (i * 7) as u8).collect(),
        )),
        modules: vec![module("second module arg=1", vec![0x5a; 77])],
        bzimage_own_entry: false,
        firmware: None,
        kernel_cache: Default::default(),
    }
}

#[test]
fn test_aout_kernel_loads_and_info_is_complete() {
    let (layout, mem) = setup();
    // Dirty what must end up zero, so zeroing is proven, not inherited.
    mem.write_slice(&[0xaa; 0x400], GuestAddress(0x10_0130))
        .unwrap();
    let spec = load_multiboot(&mem, &layout, &aout_kernel(0x3), &full_request()).unwrap();
    assert_eq!(spec.mode, BootMode::Protected);
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0030)));
    let kend = 0x10_0130 + 0x345;
    assert_eq!(spec.image, (GuestAddress(0x10_0000), kend - 0x10_0000));
    assert_eq!(
        spec.handoff,
        Handoff::Multiboot {
            magic: 0x2bad_b002,
            info: GuestAddress(BOOT_INFO_START.0)
        }
    );

    // The file bytes from offset 0x20, then zeroes to bss_end_addr.
    assert_eq!(bytes_at(&mem, 0x10_0000, 16), b"loaded-from-here");
    assert_eq!(u32_at(&mem, 0x10_0010), 0x1bad_b002);
    assert_eq!(bytes_at(&mem, 0x10_0030, 0x100), vec![0xf4; 0x100]);
    assert_eq!(bytes_at(&mem, 0x10_0130, 0x345), vec![0; 0x345]);

    let mbi = BOOT_INFO_START.0;
    let flags = u32_at(&mem, mbi);
    assert_eq!(
        flags,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
    );
    assert_eq!(flags, 0x24d);
    // RAM [0, 640K) and [1M, 16M): 640 and 15 MiB in KiB.
    assert_eq!(u32_at(&mem, mbi + 4), 640);
    assert_eq!(u32_at(&mem, mbi + 8), 15 * 1024);
    assert_eq!(u32_at(&mem, mbi + 12), 0, "boot_device is not provided");
    let cmdline = u32_at(&mem, mbi + 16);
    assert_eq!(u64::from(cmdline), CMDLINE_START.0);
    assert_eq!(
        cstr_at(&mem, cmdline.into()),
        "/boot/kernel.mb console=ttyS0 debug"
    );
    let name = u32_at(&mem, mbi + 64);
    assert_eq!(cstr_at(&mem, name.into()), "vmm");
    let area = spec.plan.get(Structure::BootInfo).unwrap();
    assert_eq!(area.start, mbi);
    assert!((area.start..area.end()).contains(&u64::from(name)));
    // Everything after boot_loader_name (APM, VBE, framebuffer) is zero.
    assert_eq!(bytes_at(&mem, mbi + 68, 116 - 68), vec![0; 48]);
    // syms, drives and config table are zero too.
    assert_eq!(bytes_at(&mem, mbi + 28, 16), vec![0; 16]);
    assert_eq!(bytes_at(&mem, mbi + 52, 12), vec![0; 12]);

    // Memory map: the boot plan's, 24 bytes an entry, each size field 20
    // and the next entry at addr + size + 4. It reserves the structure
    // itself, the command line and the GDT, and nothing else below 640 KiB.
    let map = spec.plan.memory_map(&layout);
    let reserved_low: Vec<(u64, u64)> = map
        .iter()
        .filter(|e| e.kind == MapKind::Reserved && e.start < 0xa_0000)
        .map(|e| (e.start, e.start + e.len))
        .collect();
    let cmdline_len = "/boot/kernel.mb console=ttyS0 debug".len() as u64 + 1;
    assert_eq!(
        reserved_low,
        [
            (0x500, 0x528),
            (mbi, area.end()),
            (CMDLINE_START.0, CMDLINE_START.0 + cmdline_len)
        ]
    );
    assert!(
        area.len < 0x400,
        "the area is sized to what it holds: {area:?}"
    );
    let (mmap_len, mmap_addr) = (u32_at(&mem, mbi + 44), u32_at(&mem, mbi + 48));
    assert_eq!(mmap_len as usize, 24 * map.len());
    let mut at = u64::from(mmap_addr);
    for e in &map {
        let size = u32_at(&mem, at);
        assert_eq!(size, 20);
        assert_eq!(u64_at(&mem, at + 4), e.start);
        assert_eq!(u64_at(&mem, at + 12), e.len);
        assert_eq!(u32_at(&mem, at + 20), e.kind.e820_type());
        at += u64::from(size) + 4;
    }
    assert_eq!(at, u64::from(mmap_addr + mmap_len));

    // Modules: initrd first, page-aligned after the kernel's BSS.
    assert_eq!(u32_at(&mem, mbi + 20), 2);
    let mods = u64::from(u32_at(&mem, mbi + 24));
    let req = full_request();
    let expect = [req.initrd.clone().unwrap(), req.modules[0].clone()];
    let mut prev_end = kend;
    for (i, m) in expect.iter().enumerate() {
        let e = mods + 16 * i as u64;
        let (start, end) = (u32_at(&mem, e), u32_at(&mem, e + 4));
        assert_eq!(u64::from(start) % MODULE_ALIGN, 0);
        assert_eq!(
            u64::from(start),
            prev_end.div_ceil(MODULE_ALIGN) * MODULE_ALIGN,
            "module {i} is not at the first page after the previous end"
        );
        assert_eq!((end - start) as usize, m.data.len());
        assert_eq!(bytes_at(&mem, start.into(), m.data.len()), m.data);
        assert_eq!(cstr_at(&mem, u32_at(&mem, e + 8).into()), m.name);
        assert_eq!(u32_at(&mem, e + 12), 0, "reserved");
        prev_end = end.into();
    }
}

#[test]
fn test_aout_bss_larger_than_a_chunk_is_zeroed() {
    let (layout, mem) = setup();
    let load = 0x20_0000u32;
    let mut img = header(AOUT_KLUDGE, &[load, load, 0, load + 0x2_3457, load + 32]);
    img.extend([0xf4; 16]);
    mem.write_slice(&vec![0xaa; 0x3_0000], GuestAddress(u64::from(load)))
        .unwrap();
    let spec = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap();
    assert_eq!(spec.image, (GuestAddress(0x20_0000), 0x2_3457));
    let bss = bytes_at(&mem, 0x20_0000 + 48, 0x2_3457 - 48);
    assert!(bss.iter().all(|&b| b == 0), "BSS not zeroed");
    assert_eq!(
        bytes_at(&mem, 0x22_3457, 1),
        vec![0xaa],
        "zeroed past bss_end_addr"
    );
}

#[test]
fn test_elf_kernel_loads_by_program_headers() {
    let (layout, mem) = setup();
    let mut seg = header(0x2, &[]);
    seg.extend([0xf4; 0x40]);
    let img = build(
        false,
        0xc010_000c,
        &[(0x20_0000, 0xc010_0000, &seg, seg.len() as u64 + 0x1000)],
    );
    mem.write_slice(&[0xaa; 0x1000], GuestAddress(0x20_0000 + seg.len() as u64))
        .unwrap();
    let req = LoadRequest {
        kernel_path: "k.elf".into(),
        ..Default::default()
    };
    let spec = load_multiboot(&mem, &layout, &img, &req).unwrap();
    assert_eq!(spec.mode, BootMode::Protected);
    // e_entry translated from the segment's virtual to physical range.
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x20_000c)));
    assert_eq!(
        bytes_at(&mem, 0x20_0000, seg.len()),
        seg,
        "segment not at p_paddr"
    );
    assert_eq!(
        bytes_at(&mem, 0x20_0000 + seg.len() as u64, 0x1000),
        vec![0; 0x1000]
    );
    let mbi = BOOT_INFO_START.0;
    // No modules: bit 3 clear, as GRUB does; the command line is the
    // kernel path alone.
    assert_eq!(u32_at(&mem, mbi), 0x245);
    assert_eq!(u32_at(&mem, mbi + 20), 0);
    assert_eq!(cstr_at(&mem, u32_at(&mem, mbi + 16).into()), "k.elf");
}

#[test]
fn test_aout_kludge_wins_over_elf_headers() {
    let (layout, mem) = setup();
    // An ELF whose program header says 2 MiB, but bit 16 says 3 MiB.
    let mut seg = vec![0u8; 0x10];
    let hdr_off = 84 + 0x10; // ELF32 header + one program header
    seg.extend(header(
        AOUT_KLUDGE,
        &[
            0x30_0000 + hdr_off,
            0x30_0000,
            0,
            0,
            0x30_0000 + hdr_off + 32,
        ],
    ));
    seg.extend([0xf4; 4]);
    let img = build(false, 0x20_0000, &[(0x20_0000, 0x20_0000, &seg, 0x100)]);
    let spec = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap();
    assert_eq!(
        spec.image,
        (GuestAddress(0x30_0000), img.len() as u64),
        "the whole file (load_end_addr 0) from offset 0"
    );
    assert_eq!(bytes_at(&mem, 0x30_0000, img.len()), img);
    assert_eq!(bytes_at(&mem, 0x20_0000, 4), vec![0; 4]);
}

#[test]
fn test_not_elf_without_addresses_is_refused() {
    let (layout, mem) = setup();
    let mut img = header(0x3, &[]);
    img.extend([0xf4; 64]);
    let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(matches!(e, MultibootError::NoLoadAddresses), "{e}");
    assert!(e.to_string().contains("bit 16"), "{e}");
}

#[test]
fn test_no_header_and_unknown_required_flag() {
    let (layout, mem) = setup();
    let e = load_multiboot(&mem, &layout, &[0xf4; 64], &LoadRequest::default()).unwrap_err();
    assert!(matches!(e, MultibootError::NoHeader), "{e}");
    let e = load_multiboot(&mem, &layout, &aout_kernel(0x3 | 1 << 9), &full_request()).unwrap_err();
    assert!(e.to_string().contains("required bit 9"), "{e}");
    // Nothing was written before the error.
    assert_eq!(u32_at(&mem, 0x10_0010), 0);
}

#[test]
fn test_boot_structures_make_room_for_the_kernel() {
    let (layout, mem) = setup();
    let aout = |load: u32, bss_end: u32| {
        let mut img = header(AOUT_KLUDGE, &[load, load, 0, bss_end, load + 32]);
        img.extend([0xf4; 16]);
        img
    };
    // In the legacy hole: RAM backs it, the map keeps calling it reserved.
    let spec = load_multiboot(&mem, &layout, &aout(0xa_0000, 0), &LoadRequest::default()).unwrap();
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0xa_0020)));
    // Where the boot information would go: it moves.
    let spec = load_multiboot(&mem, &layout, &aout(0x1_0100, 0), &LoadRequest::default()).unwrap();
    let Handoff::Multiboot { info, .. } = spec.handoff else {
        panic!("{:?}", spec.handoff)
    };
    let area = spec.plan.get(Structure::BootInfo).unwrap();
    assert_eq!(area.start, info.0);
    assert!(
        area.end() <= 0x1_0100 || area.start >= 0x1_0130,
        "boot information {area:?} over the kernel"
    );
    assert_eq!(
        u32_at(&mem, info.0),
        0x245,
        "the structure is where EBX says"
    );
    // Outside RAM.
    let e =
        load_multiboot(&mem, &layout, &aout(0x200_0000, 0), &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(
            e,
            MultibootError::KernelOutsideRam {
                start: 0x200_0000,
                ..
            }
        ),
        "{e}"
    );
    // ELF segments in the legacy hole load too.
    let mut seg = header(0, &[]);
    seg.extend([0xf4; 4]);
    let img = build(false, 0xb_0000, &[(0xb_0000, 0xb_0000, &seg, 16)]);
    assert!(load_multiboot(&mem, &layout, &img, &LoadRequest::default()).is_ok());
    // A kernel covering low RAM and the BIOS area leaves the ACPI RSDP
    // nowhere a guest may find it: the error names both.
    let pc = LoadRequest {
        firmware: Some(FirmwareSizes {
            acpi_tables: 0x400,
            mp_table: 0x100,
        }),
        ..LoadRequest::default()
    };
    let e = load_multiboot(&mem, &layout, &aout(0x500, 0x10_0000), &pc).unwrap_err();
    assert!(
        matches!(
            &e,
            MultibootError::Plan(PlanError::Collision {
                structure: Structure::AcpiRsdp,
                blocker,
                ..
            }) if blocker == "the Multiboot kernel"
        ),
        "{e}"
    );
    assert!(e.to_string().contains("[0x500, 0x100000)"), "{e}");
}

#[test]
fn test_elf_entry_outside_segments_and_bad_elf() {
    let (layout, mem) = setup();
    let mut seg = header(0, &[]);
    seg.extend([0xf4; 4]);
    let img = build(false, 0x30_0000, &[(0x20_0000, 0x20_0000, &seg, 16)]);
    let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(
            e,
            MultibootError::EntryOutsideImage {
                entry: 0x30_0000,
                ..
            }
        ),
        "{e}"
    );
    let mut bad = build(false, 0x20_0000, &[(0x20_0000, 0x20_0000, &seg, 16)]);
    bad[16] = 1; // ET_REL
    let e = load_multiboot(&mem, &layout, &bad, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(e, MultibootError::Elf(ElfError::NotExecutable(1))),
        "{e}"
    );
}

#[test]
fn test_elf64_above_4gib_is_refused() {
    let layout = MemoryLayout::with_phys_bits(4096 + 64, 40).unwrap();
    // Only the layout is consulted before the error: a small memory
    // suffices.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut seg = header(0, &[]);
    seg.extend([0xf4; 4]);
    let img = build(
        true,
        0x1_0000_0000,
        &[(0x1_0000_0000, 0x1_0000_0000, &seg, 16)],
    );
    let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(matches!(e, MultibootError::AboveFourGib { .. }), "{e}");
}

#[test]
fn test_module_too_large_names_its_size() {
    let (layout, mem) = setup();
    let mut req = full_request();
    req.modules.push(module("huge", vec![0; 15 << 20]));
    let e = load_multiboot(&mem, &layout, &aout_kernel(0x3), &req).unwrap_err();
    assert!(
        matches!(&e, MultibootError::BootInfo(BootInfoError::ModuleTooLarge { index: 2, size, .. }) if *size == 15 << 20),
        "{e}"
    );
    assert!(e.to_string().contains("15728640 bytes"), "{e}");
    assert!(e.to_string().contains("huge"), "{e}");
}
