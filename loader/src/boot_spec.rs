//! What a loader hands back: how the first vCPU should start.

use vm_memory::GuestAddress;

/// The CPU mode an image expects at its entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
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

/// A loaded image and how to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSpec {
    /// The mode the entry point expects.
    pub mode: BootMode,
    /// The entry point.
    pub entry: Entry,
    /// Guest-physical range the image spans: `(start, length)`, from its
    /// lowest byte to the end of its highest segment (for messages).
    pub image: (GuestAddress, u64),
    /// The ranges the image really occupies, `(start, length)`: one per
    /// loaded segment. The boot structures must stay clear of these, not of
    /// the gaps between them, so a sparse image (a trampoline below 640 KiB,
    /// the kernel at 1 MiB) may straddle the GDT or page tables. Empty means
    /// all of `image`.
    pub segments: Vec<(GuestAddress, u64)>,
    /// Register values the boot protocol requires, applied in order after the
    /// mode's defaults (for example EAX/EBX for Multiboot).
    pub regs: Vec<(Reg, u64)>,
}

impl BootSpec {
    /// The occupied ranges as `[start, end)` pairs: [`Self::segments`], or
    /// [`Self::image`] when there are none.
    pub fn occupied(&self) -> Vec<(u64, u64)> {
        let end =
            |(GuestAddress(start), len): (GuestAddress, u64)| (start, start.saturating_add(len));
        if self.segments.is_empty() {
            vec![end(self.image)]
        } else {
            self.segments.iter().copied().map(end).collect()
        }
    }

    /// The first occupied range overlapping `[start, end)`, if any.
    pub fn overlap(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        self.occupied()
            .into_iter()
            .find(|&(s, e)| s < end && e > start)
    }
}

/// A register a boot protocol or the user may set at entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}
