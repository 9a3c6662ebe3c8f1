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
    /// Guest-physical range the image occupies: `(start, length)`.
    pub image: (GuestAddress, u64),
}
