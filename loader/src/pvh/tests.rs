use super::test_image::{build, build_pvh};
use super::*;
use crate::request::ModuleImage;
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_memory::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};
use vmm_memory::{FirmwareSizes, Needs};

const MIB16: u64 = 16 << 20;

fn setup() -> (MemoryLayout, GuestMemoryMmap) {
    let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MIB16 as usize)]).unwrap();
    (layout, mem)
}

fn module(name: &str, data: Vec<u8>) -> ModuleImage {
    ModuleImage {
        name: name.to_string(),
        data,
    }
}

fn read_string(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addr.. {
        let b: u8 = mem.read_obj(GuestAddress(a)).unwrap();
        if b == 0 {
            break;
        }
        out.push(b);
    }
    out
}

/// A kernel whose code (0xf4 bytes) is at 1 MiB, 0x1800 bytes of which
/// 0x800 are BSS, entered at 1 MiB + 0x10.
fn kernel(is_64: bool) -> Vec<u8> {
    build_pvh(
        is_64,
        0x10_0010,
        &[(0x10_0000, 0x10_0000, &[0xf4; 0x1000], 0x1800)],
    )
}

fn full_request() -> LoadRequest {
    LoadRequest {
        kernel_path: "vmlinux".into(),
        cmdline: Some("console=ttyS0 quiet".into()),
        initrd: Some(module(
            "/boot/initrd.img",
            (0..5000u32).map(|i| i as u8).collect(),
        )),
        modules: vec![module("second module", vec![0x5a; 77])],
        bzimage_own_entry: false,
        firmware: Some(FirmwareSizes {
            acpi_tables: 0x400,
            mp_table: 0x100,
        }),
        kernel_cache: Default::default(),
    }
}

fn check_full_load(is_64: bool) {
    let (layout, mem) = setup();
    // Dirty the BSS so zeroing is proven, not inherited.
    mem.write_slice(&[0xaa; 0x800], GuestAddress(0x10_1000))
        .unwrap();
    let req = full_request();
    let spec = load_pvh(&mem, &layout, &kernel(is_64), &req).unwrap();
    assert_eq!(spec.mode, BootMode::Protected);
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0010)));
    assert_eq!(spec.handoff, Handoff::PvhStartInfo(GuestAddress(0x1_0000)));
    assert_eq!(spec.image, (GuestAddress(0x10_0000), 0x1800));

    let mut code = vec![0u8; 0x1800];
    mem.read_slice(&mut code, GuestAddress(0x10_0000)).unwrap();
    assert!(code[..0x1000].iter().all(|&b| b == 0xf4));
    assert!(code[0x1000..].iter().all(|&b| b == 0), "BSS not zeroed");

    let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
    assert_eq!(si.magic, 0x336e_c578);
    assert_eq!(si.version, 1);
    assert_eq!(si.flags, 0);
    assert_eq!(si.nr_modules, 2);
    assert_eq!(si.cmdline_paddr, 0x2_0000);
    assert_eq!(si.rsdp_paddr, 0xe0000, "where the plan put the RSDP");
    assert_eq!(
        spec.plan.addr(Structure::AcpiRsdp),
        Some(GuestAddress(0xe0000))
    );
    assert_eq!(si.reserved, 0);
    let area = spec.plan.get(Structure::BootInfo).unwrap();
    for a in [si.memmap_paddr, si.modlist_paddr] {
        assert!(
            (area.start + 56..area.end()).contains(&a) && a % 8 == 0,
            "{a:#x} outside {area:?}"
        );
    }

    // The memory map is the boot plan's, entry for entry: the layout's
    // with the boot structures (here the GDT, start_info's area, the
    // command line and the EBDA) reserved.
    let fw = spec.plan.memory_map(&layout);
    for p in spec
        .plan
        .placed()
        .iter()
        .filter(|p| p.what.is_reserved_in_map())
    {
        assert!(
            fw.iter().any(|e| e.kind == MapKind::Reserved
                && e.start <= p.start
                && p.end() <= e.start + e.len),
            "{p:?} not reserved"
        );
    }
    assert_eq!(
        fw.iter().filter(|e| e.kind == MapKind::Reserved).count(),
        4,
        "GDT, start_info, command line, EBDA + legacy hole: {fw:?}"
    );
    assert_eq!(si.memmap_entries as usize, fw.len());
    for (i, e) in fw.iter().enumerate() {
        let m: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(si.memmap_paddr + 24 * i as u64))
            .unwrap();
        let kind = match e.kind {
            MapKind::Ram => 1,
            MapKind::Reserved => 2,
        };
        assert_eq!(
            (m.addr, m.size, m.type_, m.reserved),
            (e.start, e.len, kind, 0)
        );
    }

    assert_eq!(read_string(&mem, si.cmdline_paddr), b"console=ttyS0 quiet");

    let expected = [req.initrd.clone().unwrap(), req.modules[0].clone()];
    let mut prev_end = 0x10_1800;
    for (i, m) in expected.iter().enumerate() {
        let e: hvm_modlist_entry = mem
            .read_obj(GuestAddress(si.modlist_paddr + 32 * i as u64))
            .unwrap();
        assert!(
            e.paddr.is_multiple_of(0x1000),
            "module {i} at {:#x}",
            e.paddr
        );
        assert!(e.paddr >= prev_end, "module {i} at {:#x}", e.paddr);
        assert_eq!(e.size, m.data.len() as u64);
        assert_eq!(e.reserved, 0);
        assert_eq!(spec.plan.overlapping(e.paddr, e.size), None);
        let mut data = vec![0u8; m.data.len()];
        mem.read_slice(&mut data, GuestAddress(e.paddr)).unwrap();
        assert_eq!(data, m.data);
        assert_eq!(read_string(&mem, e.cmdline_paddr), m.name.as_bytes());
        prev_end = e.paddr + e.size;
    }
}

#[test]
fn test_pvh_elf64_start_info_memmap_modules() {
    check_full_load(true);
}

#[test]
fn test_pvh_elf32_start_info_memmap_modules() {
    check_full_load(false);
}

#[test]
fn test_pvh_elf64_entry_below_1mib_uses_generic_loader() {
    // PVH does not use e_entry: one below 1 MiB (which linux-loader's
    // ELF loader would refuse) loads.
    let (layout, mem) = setup();
    mem.write_slice(&[0xaa; 16], GuestAddress(0x8_0004))
        .unwrap();
    let desc = 0x8_0000u32.to_le_bytes();
    let img = build(
        true,
        0x8_0000,
        &[(0x8_0000, 0x8_0000, &[0xf4; 4], 0x20)],
        &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
    );
    let spec = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap();
    assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x8_0000)));
    let mut b = [0u8; 8];
    mem.read_slice(&mut b, GuestAddress(0x8_0000)).unwrap();
    assert_eq!(b, [0xf4, 0xf4, 0xf4, 0xf4, 0, 0, 0, 0]);
}

#[test]
fn test_pvh_defaults_without_cmdline_or_modules() {
    let (layout, mem) = setup();
    mem.write_slice(b"stale", CMDLINE_START).unwrap();
    load_pvh(&mem, &layout, &kernel(true), &LoadRequest::default()).unwrap();
    let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
    assert_eq!((si.nr_modules, si.modlist_paddr), (0, 0));
    assert_eq!(si.cmdline_paddr, CMDLINE_START.0);
    assert_eq!(read_string(&mem, si.cmdline_paddr), b"");
}

#[test]
fn test_pvh_note_descriptor_sizes() {
    let (layout, _) = setup();
    let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 16)];
    let with_desc = |desc: &[u8]| {
        build(
            true,
            0x10_0000,
            seg,
            &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, desc)],
        )
    };
    // 8-byte descriptors are how older Linux wrote it (_ASM_PTR).
    assert_eq!(
        find_phys32_entry(&with_desc(&0x10_0004u64.to_le_bytes())).unwrap(),
        0x10_0004
    );
    assert!(matches!(
        find_phys32_entry(&with_desc(&[0, 0])),
        Err(PvhError::EntryNoteSize(2))
    ));
    let e = find_phys32_entry(&with_desc(&0x1_0010_0000u64.to_le_bytes())).unwrap_err();
    assert!(matches!(e, PvhError::EntryNot32Bit(0x1_0010_0000)), "{e}");
    assert!(e.to_string().contains("0x100100000"), "{e}");
    // Another owner's type-18 note is not Xen's.
    let other = build(true, 0x10_0000, seg, &[("GNU", 18, &[0; 4])]);
    assert!(matches!(
        load_pvh(&setup().1, &layout, &other, &LoadRequest::default()),
        Err(PvhError::MissingEntryNote { .. })
    ));
    let none = build(true, 0x10_0000, seg, &[]);
    let e = find_phys32_entry(&none).unwrap_err();
    assert!(e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"), "{e}");
}

#[test]
fn test_pvh_duplicate_notes_must_agree() {
    let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 16)];
    let (a, b) = (0x10_0000u32.to_le_bytes(), 0x10_0008u32.to_le_bytes());
    let same = build(
        true,
        0x10_0000,
        seg,
        &[
            ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
            ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
        ],
    );
    assert_eq!(find_phys32_entry(&same).unwrap(), 0x10_0000);
    let differ = build(
        true,
        0x10_0000,
        seg,
        &[
            ("Xen", 5, b"4.0\0"),
            ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
            ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &b),
        ],
    );
    assert!(matches!(
        find_phys32_entry(&differ),
        Err(PvhError::ConflictingEntryNotes {
            first: 0x10_0000,
            second: 0x10_0008
        })
    ));
}

#[test]
fn test_pvh_entry_outside_ram_or_image() {
    let (layout, mem) = setup();
    let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 0x20)];
    let desc = 0x4000_0000u32.to_le_bytes();
    let img = build(
        true,
        0x10_0000,
        seg,
        &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
    );
    let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(matches!(e, PvhError::EntryOutsideRam(0x4000_0000)), "{e}");
    assert!(e.to_string().contains("0x40000000"), "{e}");
    // In RAM, just past the segment's memory size.
    let desc = 0x10_0020u32.to_le_bytes();
    let img = build(
        true,
        0x10_0000,
        seg,
        &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
    );
    let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(
            e,
            PvhError::EntryOutsideImage {
                entry: 0x10_0020,
                start: 0x10_0000,
                end: 0x10_0020
            }
        ),
        "{e}"
    );
}

#[test]
fn test_pvh_cmdline_limits() {
    let (layout, mem) = setup();
    let longest = "x".repeat(CMDLINE_MAX_SIZE as usize - 1);
    let req = LoadRequest {
        cmdline: Some(longest.clone()),
        ..Default::default()
    };
    load_pvh(&mem, &layout, &kernel(true), &req).unwrap();
    assert_eq!(read_string(&mem, CMDLINE_START.0).len(), longest.len());

    let (layout, mem) = setup();
    let req = LoadRequest {
        cmdline: Some(longest + "y"),
        ..Default::default()
    };
    let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
    assert!(
        matches!(
            e,
            PvhError::BootInfo(BootInfoError::CmdlineTooLong { len: 0x1_0000, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("65536 bytes"), "{e}");
    // Nothing was written: the check comes before any copy.
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0);

    let req = LoadRequest {
        cmdline: Some("a\0b".into()),
        ..Default::default()
    };
    let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
    assert!(
        matches!(
            e,
            PvhError::BootInfo(BootInfoError::NulInString { offset: 1, .. })
        ),
        "{e}"
    );
}

#[test]
fn test_pvh_module_too_large() {
    let (layout, mem) = setup();
    // 16 MiB of RAM, kernel ends at 1 MiB + 6 KiB: 15 MiB - 8 KiB are free.
    let free = MIB16 - 0x10_2000;
    let fits = LoadRequest {
        initrd: Some(module("fits", vec![1; free as usize])),
        ..Default::default()
    };
    load_pvh(&mem, &layout, &kernel(true), &fits).unwrap();
    let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
    let e: hvm_modlist_entry = mem.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
    assert_eq!((e.paddr, e.size), (0x10_2000, free));

    let req = LoadRequest {
        initrd: Some(module("small", vec![1; 10])),
        modules: vec![module("big.img", vec![2; free as usize])],
        ..Default::default()
    };
    let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
    assert!(
        matches!(&e, PvhError::BootInfo(BootInfoError::ModuleTooLarge { index: 1, size, from: 0x10_3000, .. }) if *size == free),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&free.to_string()) && msg.contains("big.img"),
        "{msg}"
    );
}

#[test]
fn test_pvh_boot_info_area_overflow() {
    let (layout, mem) = setup();
    let long_name = "n".repeat(40_000);
    let req = LoadRequest {
        initrd: Some(module(&long_name, vec![1])),
        modules: vec![module(&long_name, vec![2])],
        ..Default::default()
    };
    let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
    assert!(
        matches!(
            e,
            PvhError::BootInfo(BootInfoError::BootInfoTooLarge { modules: 2, .. })
        ),
        "{e}"
    );
}

#[test]
fn test_place_module_skips_boot_structures_and_legacy_hole() {
    let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
    let needs = Needs {
        zero_page: true,
        page_tables: true,
        boot_info: Some(0x1_0000),
        cmdline: Some(0x1_0000),
        ..Needs::default()
    };
    let map = vmm_memory::boot_plan::plan(&layout, &[], &needs)
        .unwrap()
        .memory_map(&layout);
    // From 0x2000: the zero page, page tables, boot info and command line
    // are all in the way; the first clear page is 0x30000.
    assert_eq!(place_module(&map, 0x2000, 0x6000), Some(0x3_0000));
    assert_eq!(place_module(&map, 0x2000, 0x1000), Some(0x2000));
    // Unaligned starts round up to a page.
    assert_eq!(place_module(&map, 0x3_0001, 1), Some(0x3_1000));
    // Would cross into the reserved legacy hole: goes to 1 MiB.
    assert_eq!(place_module(&map, 0x9_f000, 0x2000), Some(0x10_0000));
    assert_eq!(place_module(&map, 0x9_f000, 0x1000), Some(0x9_f000));
    // Nothing fits past the end of RAM.
    assert_eq!(place_module(&map, MIB16 - 0x1000, 0x1001), None);
    assert_eq!(place_module(&map, MIB16, 0), None);
    assert_eq!(place_module(&map, u64::MAX - 10, 1), None);
}

#[test]
fn test_pvh_module_after_low_kernel_avoids_boot_structures() {
    let (layout, mem) = setup();
    let img = build_pvh(false, 0x1000, &[(0x1000, 0x1000, &[0xf4; 0x100], 0x100)]);
    let req = LoadRequest {
        initrd: Some(module("i", vec![7; 0x7000])),
        ..Default::default()
    };
    let spec = load_pvh(&mem, &layout, &img, &req).unwrap();
    let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
    let e: hvm_modlist_entry = mem.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
    // The first page after the kernel: a 32-bit entry has no page tables
    // or zero page in the way, and the module avoids what was placed.
    assert_eq!(e.paddr, 0x2000);
    assert_eq!(spec.plan.overlapping(e.paddr, e.size), None);
    // The start_info survived the module copy.
    assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
}

#[test]
fn test_pvh_segments_where_structures_would_go_load_and_they_move() {
    let (layout, mem) = setup();
    // Over the preferred start_info and command line addresses.
    let img = build_pvh(
        true,
        0x1_0000,
        &[(0x1_0000, 0x1_0000, &[0xf4; 0x1_1000], 0x1_1000)],
    );
    let spec = load_pvh(&mem, &layout, &img, &full_request()).unwrap();
    let Handoff::PvhStartInfo(at) = spec.handoff else {
        panic!("{:?}", spec.handoff)
    };
    assert_ne!(at, START_INFO_ADDR);
    let si: hvm_start_info = mem.read_obj(at).unwrap();
    assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
    assert_eq!(read_string(&mem, si.cmdline_paddr), b"console=ttyS0 quiet");
    for p in spec.plan.placed() {
        assert!(
            p.end() <= 0x1_0000 || p.start >= 0x2_1000,
            "{p:?} over the kernel"
        );
    }
    // Bad segments are still ELF errors.
    let img = build_pvh(true, 0x10_0000, &[(0x1_0000_0000, 0x10_0000, &[0xf4], 1)]);
    let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
    assert!(
        matches!(e, PvhError::Elf(ElfError::SegmentOutsideRam { .. })),
        "{e}"
    );
}
