//! The boot structures a loaded image gets: what its entry mode, its boot
//! protocol and the platform need, placed by vmm-memory's planner
//! ([`vmm_memory::boot_plan`]) around the bytes the image occupies. Every
//! loader ends here, so the rules are the same for every format:
//!
//! - a protected- or long-mode entry gets the boot GDT, a long-mode entry
//!   the page tables too, a real-mode entry neither;
//! - the protocol adds what it writes (Linux's zero page, Multiboot's or
//!   PVH's boot information, the command line);
//! - with [`LoadRequest::firmware`] the PC platform's BDA, EBDA, ACPI and
//!   MP tables, and for a real-mode entry the IVT and its BIOS stubs.

use vm_memory::GuestAddress;
use vmm_memory::boot_plan::{self, BootPlan, Needs, Occupied, PlanError};
use vmm_memory::MemoryLayout;

use crate::boot_spec::BootMode;
use crate::request::LoadRequest;

/// What a boot protocol writes besides the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolNeeds {
    /// Linux's zero page.
    pub zero_page: bool,
    /// The boot information area, bytes.
    pub boot_info: Option<u64>,
    /// The command line, bytes with the NUL.
    pub cmdline: Option<u64>,
}

/// What a boot in `mode` with `protocol`'s structures needs, on the
/// platform `req` describes.
pub fn needs(mode: BootMode, req: &LoadRequest, protocol: ProtocolNeeds) -> Needs {
    Needs {
        gdt: mode != BootMode::Real,
        page_tables: mode == BootMode::Long,
        zero_page: protocol.zero_page,
        boot_info: protocol.boot_info,
        cmdline: protocol.cmdline,
        pc: req.firmware,
        real_mode_bios: mode == BootMode::Real && req.firmware.is_some(),
    }
}

/// The image's ranges `(start, length)` as the planner takes them, each
/// named `what`.
pub fn occupied(what: &str, ranges: &[(GuestAddress, u64)]) -> Vec<Occupied> {
    ranges
        .iter()
        .map(|&(at, len)| Occupied::new(what, at.0, len))
        .collect()
}

/// Places what a boot in `mode` needs around `occupied`.
pub fn plan(
    layout: &MemoryLayout,
    mode: BootMode,
    occupied: &[Occupied],
    req: &LoadRequest,
    protocol: ProtocolNeeds,
) -> Result<BootPlan, PlanError> {
    boot_plan::plan(layout, occupied, &needs(mode, req, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_memory::{FirmwareSizes, Structure};

    #[test]
    fn test_needs_follow_the_mode_and_platform() {
        let bare = LoadRequest::default();
        let n = needs(BootMode::Real, &bare, ProtocolNeeds::default());
        assert!(!n.gdt && !n.page_tables && !n.real_mode_bios && n.pc.is_none());
        let n = needs(BootMode::Protected, &bare, ProtocolNeeds::default());
        assert!(n.gdt && !n.page_tables);
        let pc = LoadRequest {
            firmware: Some(FirmwareSizes {
                acpi_tables: 0x400,
                mp_table: 0x100,
            }),
            ..Default::default()
        };
        let n = needs(BootMode::Real, &pc, ProtocolNeeds::default());
        assert!(n.real_mode_bios && !n.gdt);
        let n = needs(BootMode::Long, &pc, ProtocolNeeds::default());
        assert!(n.gdt && n.page_tables && !n.real_mode_bios);

        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let image = occupied("the image", &[(GuestAddress(0x9000), 0x10)]);
        let p = plan(
            &layout,
            BootMode::Long,
            &image,
            &pc,
            ProtocolNeeds::default(),
        )
        .unwrap();
        assert_ne!(p.addr(Structure::PageTables), Some(GuestAddress(0x9000)));
        assert!(p.addr(Structure::AcpiRsdp).is_some());
    }

    /// xorshift64: a fixed, reproducible sequence of placements.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Whatever an image looks like, what the loader accepts has every boot
    /// structure in RAM clear of every segment, and a memory map that
    /// covers RAM and reserves them; what it refuses, it refuses with an
    /// error (no panic). ELF, Multiboot and PVH images with one to three
    /// segments anywhere in the first 2 MiB, on both platforms.
    #[test]
    fn test_every_accepted_image_has_its_structures_clear_of_it() {
        use crate::multiboot::test_image::header;
        use vm_memory::GuestMemoryMmap;
        use vmm_memory::MapKind;

        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut loaded, mut refused) = (0, 0);
        for round in 0..600u64 {
            let count = 1 + next(&mut state) % 3;
            // Now and then all of the first MiB: on the PC platform the
            // RSDP then has nowhere to go.
            let mut segs: Vec<(u64, u64)> = if round % 25 == 1 {
                vec![(0, 0x10_0000)]
            } else {
                Vec::new()
            };
            for _ in 0..count {
                let at = (next(&mut state) % (2 << 20)) & !0xf;
                let len = 0x40 + next(&mut state) % 0x3_0000;
                if segs.iter().all(|&(s, l)| at + len <= s || at >= s + l) {
                    segs.push((at, len));
                }
            }
            let format = round % 3;
            let mut first = header(0, &[]);
            first.extend([0xf4; 0x20]);
            let bytes: Vec<Vec<u8>> = segs
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    if i == 0 {
                        first.clone()
                    } else {
                        vec![0xf4; 0x10]
                    }
                })
                .collect();
            let built: Vec<crate::elf::test_image::Seg<'_>> = segs
                .iter()
                .zip(&bytes)
                .map(|(&(at, len), b)| (at, at, b.as_slice(), len.max(b.len() as u64)))
                .collect();
            let entry = segs[0].0 + 12;
            let is_64 = round % 2 == 0;
            let image = match format {
                0 => crate::elf::test_image::build(is_64, entry, &built),
                1 => crate::elf::test_image::build(false, entry, &built),
                _ => crate::pvh::test_image::build_pvh(is_64, entry as u32, &built),
            };
            let forced = [
                None,
                Some(crate::Format::Multiboot),
                Some(crate::Format::Pvh),
            ];
            let req = LoadRequest {
                kernel_path: "k".into(),
                firmware: (round % 4 != 0).then_some(FirmwareSizes {
                    acpi_tables: 0x500,
                    mp_table: 0x120,
                }),
                ..Default::default()
            };
            let result = crate::load(
                &mem,
                &layout,
                &image,
                forced[format as usize],
                &req,
                crate::raw::RawOptions::default(),
            );
            if round % 25 == 1 && req.firmware.is_some() {
                let e = result.as_ref().map(|_| ()).unwrap_err().to_string();
                assert!(e.contains("has no room"), "round {round}: {e}");
            }
            let Ok((_, spec)) = result else {
                refused += 1;
                continue;
            };
            loaded += 1;
            let occupied = spec.occupied();
            for p in spec.plan.placed() {
                assert!(layout.contains_range(GuestAddress(p.start), p.len), "{p:?}");
                for &(s, e) in &occupied {
                    assert!(
                        p.end() <= s || p.start >= e,
                        "round {round}: {p:?} over [{s:#x}, {e:#x})"
                    );
                }
            }
            let map = spec.plan.memory_map(&layout);
            assert_eq!(map.iter().map(|e| e.len).sum::<u64>(), layout.size());
            for p in spec
                .plan
                .placed()
                .iter()
                .filter(|p| p.what.is_reserved_in_map())
            {
                assert!(
                    map.iter().any(|e| e.kind == MapKind::Reserved
                        && e.start <= p.start
                        && p.end() <= e.start + e.len),
                    "round {round}: {p:?} not reserved"
                );
            }
        }
        // The sequence must exercise both outcomes to mean anything.
        assert!(
            loaded > 300 && refused >= 12,
            "{loaded} loaded, {refused} refused"
        );
    }
}
