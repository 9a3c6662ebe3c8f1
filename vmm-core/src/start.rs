//! From what the loader found to how the first vCPU starts: a
//! [`BootSpec`] (mode, entry, the protocol's [`Handoff`]) plus the user's
//! register values becomes a [`StartState`] for vmm-cpu.
//!
//! The loader and the vCPU crate do not know each other; this is the one
//! place that says which register each boot protocol uses.

use vmm_cpu::{BootTables, CpuMode, Reg, StartState};
use vmm_loader::{BootMode, BootSpec, Handoff};
use vmm_memory::Structure;

/// The vCPU mode for a loader's boot mode.
pub fn cpu_mode(mode: BootMode) -> CpuMode {
    match mode {
        BootMode::Real => CpuMode::Real,
        BootMode::Protected => CpuMode::Protected,
        BootMode::Long => CpuMode::Long,
    }
}

/// The vCPU entry for a loader's entry.
pub fn cpu_entry(entry: vmm_loader::Entry) -> vmm_cpu::Entry {
    match entry {
        vmm_loader::Entry::Linear(a) => vmm_cpu::Entry::Linear(a),
        vmm_loader::Entry::Segmented { segment, offset } => {
            vmm_cpu::Entry::Segmented { segment, offset }
        }
    }
}

/// The registers a boot protocol's hand-off is passed in.
pub fn handoff_regs(handoff: Handoff) -> Vec<(Reg, u64)> {
    match handoff {
        Handoff::None => Vec::new(),
        Handoff::Multiboot { magic, info } => {
            vec![(Reg::Rax, u64::from(magic)), (Reg::Rbx, info.0)]
        }
        Handoff::LinuxZeroPage(zero_page) => vec![(Reg::Rsi, zero_page.0)],
        Handoff::PvhStartInfo(start_info) => vec![(Reg::Rbx, start_info.0)],
    }
}

/// How the first vCPU starts for `spec`: its mode and entry, the hand-off
/// registers, then `user_regs` in order (so the user's values win), and
/// the GDT and page tables where the boot plan put them.
pub fn start_state(spec: &BootSpec, user_regs: &[(Reg, u64)]) -> StartState {
    let mut regs = handoff_regs(spec.handoff);
    regs.extend_from_slice(user_regs);
    let defaults = BootTables::default();
    StartState {
        mode: cpu_mode(spec.mode),
        entry: cpu_entry(spec.entry),
        regs,
        tables: BootTables {
            gdt: spec.plan.addr(Structure::Gdt).unwrap_or(defaults.gdt),
            page_tables: spec
                .plan
                .addr(Structure::PageTables)
                .unwrap_or(defaults.page_tables),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    fn spec(mode: BootMode, handoff: Handoff) -> BootSpec {
        BootSpec {
            mode,
            entry: vmm_loader::Entry::Segmented {
                segment: 0x1000,
                offset: 0x20,
            },
            image: (GuestAddress(0x10_0000), 0x1000),
            segments: vec![],
            handoff,
            plan: Default::default(),
        }
    }

    #[test]
    fn test_start_state_handoff_registers() {
        let mb = Handoff::Multiboot {
            magic: 0x2bad_b002,
            info: GuestAddress(0x1_0000),
        };
        assert_eq!(
            handoff_regs(mb),
            vec![(Reg::Rax, 0x2bad_b002), (Reg::Rbx, 0x1_0000)]
        );
        assert_eq!(
            handoff_regs(Handoff::LinuxZeroPage(GuestAddress(0x7000))),
            vec![(Reg::Rsi, 0x7000)]
        );
        assert_eq!(
            handoff_regs(Handoff::PvhStartInfo(GuestAddress(0x1_0000))),
            vec![(Reg::Rbx, 0x1_0000)]
        );
        assert!(handoff_regs(Handoff::None).is_empty());
    }

    #[test]
    fn test_start_state_user_regs_come_last() {
        let s = start_state(
            &spec(BootMode::Long, Handoff::LinuxZeroPage(GuestAddress(0x7000))),
            &[(Reg::Rsi, 1), (Reg::Rax, 2)],
        );
        assert_eq!(s.mode, CpuMode::Long);
        assert_eq!(
            s.entry,
            vmm_cpu::Entry::Segmented {
                segment: 0x1000,
                offset: 0x20
            }
        );
        assert_eq!(
            s.regs,
            vec![(Reg::Rsi, 0x7000), (Reg::Rsi, 1), (Reg::Rax, 2)]
        );
        for (m, c) in [
            (BootMode::Real, CpuMode::Real),
            (BootMode::Protected, CpuMode::Protected),
            (BootMode::Long, CpuMode::Long),
        ] {
            assert_eq!(cpu_mode(m), c);
        }
    }
}
