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
}
