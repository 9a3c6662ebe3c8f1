//! What a vCPU needs to know to start: the CPU mode, where the first
//! instruction is, and the general-purpose registers to preset.
//!
//! These are this crate's own types, so it can be driven by any loader (or
//! by hand, as `examples/real_mode.rs` does). [`crate::setup_boot_state`]
//! turns a [`StartState`] into KVM register state.

use vm_memory::GuestAddress;
use vmm_memory::layout::{BOOT_GDT_START, PML4_START};

/// The CPU mode the first instruction runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// 16-bit real mode.
    Real,
    /// 32-bit flat protected mode, paging off.
    Protected,
    /// 64-bit long mode with identity-mapped low memory.
    Long,
}

/// Where execution begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A linear address; in real mode it means CS=0 and IP=address.
    Linear(GuestAddress),
    /// Real mode segment:offset: CS selector `segment` (base `segment * 16`)
    /// and IP `offset`.
    Segmented {
        /// CS selector.
        segment: u16,
        /// IP.
        offset: u16,
    },
}

impl Entry {
    /// The linear address the first instruction is fetched from.
    pub fn linear(&self) -> GuestAddress {
        match *self {
            Entry::Linear(a) => a,
            Entry::Segmented { segment, offset } => {
                GuestAddress((u64::from(segment) << 4) + u64::from(offset))
            }
        }
    }
}

/// A general-purpose register (or RIP/RFLAGS) that can be preset at entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Reg {
    /// RAX.
    Rax,
    /// RBX.
    Rbx,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// RSI.
    Rsi,
    /// RDI.
    Rdi,
    /// RSP.
    Rsp,
    /// RBP.
    Rbp,
    /// R8.
    R8,
    /// R9.
    R9,
    /// R10.
    R10,
    /// R11.
    R11,
    /// R12.
    R12,
    /// R13.
    R13,
    /// R14.
    R14,
    /// R15.
    R15,
    /// RIP.
    Rip,
    /// RFLAGS.
    Rflags,
}

impl Reg {
    /// Every register, in the order their names are listed in errors.
    pub const ALL: [Reg; 18] = [
        Reg::Rax,
        Reg::Rbx,
        Reg::Rcx,
        Reg::Rdx,
        Reg::Rsi,
        Reg::Rdi,
        Reg::Rsp,
        Reg::Rbp,
        Reg::R8,
        Reg::R9,
        Reg::R10,
        Reg::R11,
        Reg::R12,
        Reg::R13,
        Reg::R14,
        Reg::R15,
        Reg::Rip,
        Reg::Rflags,
    ];

    /// The register's lower-case name (`rax`, `r8`, `rflags`).
    pub fn name(self) -> &'static str {
        match self {
            Reg::Rax => "rax",
            Reg::Rbx => "rbx",
            Reg::Rcx => "rcx",
            Reg::Rdx => "rdx",
            Reg::Rsi => "rsi",
            Reg::Rdi => "rdi",
            Reg::Rsp => "rsp",
            Reg::Rbp => "rbp",
            Reg::R8 => "r8",
            Reg::R9 => "r9",
            Reg::R10 => "r10",
            Reg::R11 => "r11",
            Reg::R12 => "r12",
            Reg::R13 => "r13",
            Reg::R14 => "r14",
            Reg::R15 => "r15",
            Reg::Rip => "rip",
            Reg::Rflags => "rflags",
        }
    }
}

/// A register name that is not one of [`Reg::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown register '{0}' (expected one of rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8-r15, rip, rflags)")]
pub struct UnknownReg(pub String);

impl std::str::FromStr for Reg {
    type Err = UnknownReg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Reg::ALL
            .into_iter()
            .find(|r| r.name() == lower)
            .ok_or_else(|| UnknownReg(s.to_string()))
    }
}

/// Where the structures a protected- or long-mode entry needs go: the boot
/// GDT and the identity-mapping page tables (PML4, PDPT, then four page
/// directories, 0x6000 bytes in all). A VMM with a boot plan passes the
/// planned addresses; the defaults are the layout's preferred ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootTables {
    /// The GDT's address (8-byte aligned).
    pub gdt: GuestAddress,
    /// The PML4's address (4 KiB aligned); the rest follow it.
    pub page_tables: GuestAddress,
}

impl Default for BootTables {
    fn default() -> Self {
        BootTables {
            gdt: BOOT_GDT_START,
            page_tables: PML4_START,
        }
    }
}

/// How the first vCPU starts: mode, entry point, register values applied
/// in order after the mode's defaults (later values win), and where the
/// mode's boot tables go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartState {
    /// The mode the entry point expects.
    pub mode: CpuMode,
    /// The entry point.
    pub entry: Entry,
    /// Registers to preset, in order.
    pub regs: Vec<(Reg, u64)>,
    /// Where the GDT (protected and long mode) and page tables (long mode)
    /// are written.
    pub tables: BootTables,
}

impl StartState {
    /// A start in `mode` at `entry` with no preset registers and the boot
    /// tables at their preferred addresses.
    pub fn new(mode: CpuMode, entry: Entry) -> Self {
        StartState {
            mode,
            entry,
            regs: Vec::new(),
            tables: BootTables::default(),
        }
    }

    /// Puts the boot tables at `tables`.
    pub fn with_tables(mut self, tables: BootTables) -> Self {
        self.tables = tables;
        self
    }

    /// Adds a register value (applied after those already given).
    pub fn with_reg(mut self, reg: Reg, value: u64) -> Self {
        self.regs.push((reg, value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reg_parse_round_trips() {
        for r in Reg::ALL {
            assert_eq!(r.name().parse::<Reg>(), Ok(r));
        }
        assert_eq!("RAX".parse::<Reg>(), Ok(Reg::Rax));
        let e = "eax".parse::<Reg>().unwrap_err();
        assert!(e.to_string().contains("'eax'"));
    }

    #[test]
    fn test_entry_linear_of_segmented() {
        let e = Entry::Segmented {
            segment: 0x1000,
            offset: 0x10,
        };
        assert_eq!(e.linear(), GuestAddress(0x10010));
    }

    #[test]
    fn test_start_state_regs_keep_their_order() {
        let s = StartState::new(CpuMode::Real, Entry::Linear(GuestAddress(0x1000)))
            .with_reg(Reg::Rax, 1)
            .with_reg(Reg::Rax, 2);
        assert_eq!(s.regs, vec![(Reg::Rax, 1), (Reg::Rax, 2)]);
    }
}
