//! What a loader hands back: how the first vCPU should start.

use vm_memory::GuestAddress;
use vmm_memory::BootPlan;

/// The CPU mode an image expects at its entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
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
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Entry {
    /// A linear address; in real mode it means CS=0 and IP=address.
    Linear(#[cfg_attr(feature = "serde", serde(with = "guest_address"))] GuestAddress),
    /// Real mode segment:offset: CS selector `segment` (base `segment * 16`)
    /// and IP `offset`.
    Segmented {
        /// CS selector.
        segment: u16,
        /// IP.
        offset: u16,
    },
}

/// (De)serialises a [`GuestAddress`] as its number (vm-memory has no serde).
#[cfg(feature = "serde")]
mod guest_address {
    use serde::{Deserialize, Deserializer, Serializer};
    use vm_memory::GuestAddress;

    pub fn serialize<S: Serializer>(a: &GuestAddress, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(a.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GuestAddress, D::Error> {
        u64::deserialize(d).map(GuestAddress)
    }
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
    /// What the boot protocol hands the kernel at entry (in registers).
    pub handoff: Handoff,
    /// Where every structure the boot needs goes (GDT, page tables, the
    /// protocol's and the platform's), placed around [`Self::segments`];
    /// the memory map the kernel was given reserves them.
    pub plan: BootPlan,
}

/// What a boot protocol passes to the kernel at its entry point, and in
/// which register. The VMM turns it into register values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Nothing (raw binaries, plain ELF programs).
    None,
    /// Multiboot v1: EAX = `magic` (0x2BADB002), EBX = the physical address
    /// of the Multiboot information structure.
    Multiboot {
        /// The boot loader magic for EAX.
        magic: u32,
        /// The information structure's address, for EBX.
        info: GuestAddress,
    },
    /// Linux 64-bit boot protocol: RSI = the zero page (`struct
    /// boot_params`).
    LinuxZeroPage(GuestAddress),
    /// PVH: EBX = the `hvm_start_info` structure.
    PvhStartInfo(GuestAddress),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_entry_linear_of_segmented() {
        let e = Entry::Segmented {
            segment: 0x1000,
            offset: 0x10,
        };
        assert_eq!(e.linear(), GuestAddress(0x10010));
    }

    #[test]
    fn test_occupied_is_the_segments_or_else_the_span() {
        let spec = BootSpec {
            mode: BootMode::Long,
            entry: Entry::Linear(GuestAddress(0x10_0000)),
            image: (GuestAddress(0x8000), 0x10_0000),
            segments: vec![
                (GuestAddress(0x8000), 0x1000),
                (GuestAddress(0x10_0000), 0x8000),
            ],
            handoff: Handoff::None,
            plan: BootPlan::default(),
        };
        assert_eq!(
            spec.occupied(),
            vec![(0x8000, 0x9000), (0x10_0000, 0x10_8000)]
        );
        assert_eq!(spec.overlap(0x9000, 0xf000), None);
        assert_eq!(spec.overlap(0x8fff, 0x9000), Some((0x8000, 0x9000)));
        // No segments: the whole span counts.
        let unsplit = BootSpec {
            segments: vec![],
            ..spec
        };
        assert_eq!(unsplit.occupied(), vec![(0x8000, 0x10_8000)]);
        assert!(unsplit.overlap(0x9000, 0xf000).is_some());
    }
}
