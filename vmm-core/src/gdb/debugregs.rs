//! The four x86 debug-address registers DR0-DR3, shared by gdb's
//! breakpoints and watchpoints, and the DR7 that enables them (Intel SDM
//! Vol. 3B, 18.2 "Debug registers").
//!
//! Every gdb breakpoint becomes an instruction breakpoint in a free slot,
//! also the ones gdb asks for as software breakpoints (`Z0`): an `int3`
//! written into guest code never reaches the VMM on the hosts this project
//! runs on (KVM delivers it to the guest), so there are at most four
//! breakpoints and watchpoints together. Watchpoints cover 1, 2, 4 or 8
//! naturally aligned bytes, as the hardware does.

use gdbstub::target::ext::breakpoints::WatchKind;
use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP,
};

/// Number of debug-address registers.
pub const SLOTS: usize = 4;

/// DR6.BS: the #DB came from a single step.
pub const DR6_BS: u64 = 1 << 14;
/// DR6.B0-B3: which address register matched.
const DR6_B_MASK: u64 = 0xf;

/// DR7 R/W field values.
const RW_EXEC: u64 = 0b00;
const RW_WRITE: u64 = 0b01;
const RW_ACCESS: u64 = 0b11;

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An instruction breakpoint; `software` when gdb asked for `Z0`, so
    /// the stop is reported the way gdb expects for it.
    Breakpoint {
        /// Linear address of the instruction.
        addr: u64,
        /// Inserted as a software breakpoint.
        software: bool,
    },
    /// A data watchpoint.
    Watch {
        /// Linear address of the first byte.
        addr: u64,
        /// 1, 2, 4 or 8.
        len: u64,
        /// Write or access (x86 has no read-only data breakpoint).
        kind: WatchKind,
    },
}

/// The breakpoints and watchpoints gdb has set, one per debug register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HwSlots {
    slots: [Option<Slot>; SLOTS],
}

impl HwSlots {
    /// Puts `slot` in the first free register; `false` when all four are
    /// taken, or when a watchpoint's length or alignment is not one the
    /// hardware has, or it is a read watchpoint (gdb then says it could
    /// not insert it).
    pub fn add(&mut self, slot: Slot) -> bool {
        if let Slot::Watch { addr, len, kind } = slot {
            let aligned = matches!(len, 1 | 2 | 4 | 8) && addr % len == 0;
            if !aligned || kind == WatchKind::Read {
                return false;
            }
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => {
                *free = Some(slot);
                true
            }
            None => false,
        }
    }

    /// Removes a slot equal to `slot`; `false` if there is none.
    pub fn remove(&mut self, slot: Slot) -> bool {
        match self.slots.iter_mut().find(|s| **s == Some(slot)) {
            Some(found) => {
                *found = None;
                true
            }
            None => false,
        }
    }

    /// Removes every slot.
    pub fn clear(&mut self) {
        self.slots = [None; SLOTS];
    }

    /// Whether any slot is in use.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// The watchpoints set, with their slot numbers.
    pub fn watchpoints(&self) -> impl Iterator<Item = (usize, Slot)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.filter(|s| matches!(s, Slot::Watch { .. }))
                .map(|s| (i, s))
        })
    }

    /// The slot DR6 says matched (the lowest of B0-B3 that is in use).
    pub fn hit(&self, dr6: u64) -> Option<Slot> {
        (0..SLOTS)
            .filter(|i| dr6 & DR6_B_MASK & (1 << i) != 0)
            .find_map(|i| self.slots[i])
    }

    /// DR7 for these slots: `L0`-`L3` enable bits, R/W and LEN fields.
    pub fn dr7(&self) -> u64 {
        let mut dr7 = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let (rw, len) = match *slot {
                Slot::Breakpoint { .. } => (RW_EXEC, 0),
                Slot::Watch { len, kind, .. } => {
                    let rw = if kind == WatchKind::Write {
                        RW_WRITE
                    } else {
                        RW_ACCESS
                    };
                    // LEN encoding: 1 -> 00, 2 -> 01, 8 -> 10, 4 -> 11.
                    let code = match len {
                        2 => 0b01,
                        8 => 0b10,
                        4 => 0b11,
                        _ => 0b00,
                    };
                    (rw, code)
                }
            };
            dr7 |= 1 << (2 * i);
            dr7 |= (rw | (len << 2)) << (16 + 4 * i);
        }
        dr7
    }

    /// The KVM_SET_GUEST_DEBUG argument for a vCPU that resumes with these
    /// slots, single-stepping when `step` (with `step_flags` added, such
    /// as KVM_GUESTDBG_BLOCKIRQ where the host has it). No slot and no
    /// step turns guest debugging off.
    pub fn guest_debug(&self, step: bool, step_flags: u32) -> kvm_guest_debug {
        let mut debug = kvm_guest_debug::default();
        if self.is_empty() && !step {
            return debug;
        }
        debug.control = KVM_GUESTDBG_ENABLE;
        if step {
            debug.control |= KVM_GUESTDBG_SINGLESTEP | step_flags;
        }
        if !self.is_empty() {
            debug.control |= KVM_GUESTDBG_USE_HW_BP;
            let mut arch = kvm_guest_debug_arch::default();
            for (i, slot) in self.slots.iter().enumerate() {
                arch.debugreg[i] = match slot {
                    Some(Slot::Breakpoint { addr, .. }) | Some(Slot::Watch { addr, .. }) => *addr,
                    None => 0,
                };
            }
            arch.debugreg[7] = self.dr7();
            debug.arch = arch;
        }
        debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(addr: u64) -> Slot {
        Slot::Breakpoint {
            addr,
            software: true,
        }
    }

    #[test]
    fn test_hw_slots_fill_four_and_refuse_a_fifth() {
        let mut s = HwSlots::default();
        for i in 0..4 {
            assert!(s.add(bp(0x1000 + i)));
        }
        assert!(!s.add(bp(0x2000)), "a fifth breakpoint");
        assert!(s.remove(bp(0x1001)));
        assert!(!s.remove(bp(0x1001)), "removed twice");
        assert!(s.add(bp(0x2000)), "the freed register is reused");
        assert_eq!(s.hit(0b0010), Some(bp(0x2000)));
    }

    #[test]
    fn test_hw_slots_dr7_encoding() {
        let mut s = HwSlots::default();
        assert!(s.add(bp(0x10_0000)));
        let w = Slot::Watch {
            addr: 0x20_0000,
            len: 8,
            kind: WatchKind::Write,
        };
        assert!(s.add(w));
        let a = Slot::Watch {
            addr: 0x20_0010,
            len: 4,
            kind: WatchKind::ReadWrite,
        };
        assert!(s.add(a));
        // L0; L1 with R/W1 = 01, LEN1 = 10; L2 with R/W2 = 11, LEN2 = 11.
        assert_eq!(
            s.dr7(),
            0b01 | 0b0100 | 0b01_0000 | (0b1001 << 20) | (0b1111 << 24)
        );
        let d = s.guest_debug(false, 0);
        assert_eq!(d.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!(&d.arch.debugreg[..3], &[0x10_0000, 0x20_0000, 0x20_0010]);
        assert_eq!(d.arch.debugreg[7], s.dr7());
        // The probe's values (a write watchpoint of 8 bytes in DR1).
        let mut only = HwSlots::default();
        assert!(only.add(bp(0)));
        assert!(only.remove(bp(0)));
        assert!(only.add(Slot::Watch {
            addr: 0,
            len: 8,
            kind: WatchKind::Write
        }));
        assert_eq!(only.dr7(), 1 | (1 << 16) | (0b10 << 18));
    }

    #[test]
    fn test_hw_slots_refuse_what_the_hardware_cannot_watch() {
        let mut s = HwSlots::default();
        for (addr, len, kind) in [
            (0x1001, 2, WatchKind::Write),
            (0x1004, 8, WatchKind::Write),
            (0x1000, 3, WatchKind::Write),
            (0x1000, 16, WatchKind::ReadWrite),
            (0x1000, 4, WatchKind::Read),
        ] {
            assert!(!s.add(Slot::Watch { addr, len, kind }), "{addr:#x} {len}");
        }
        assert!(s.is_empty());
    }

    #[test]
    fn test_guest_debug_off_step_and_hit() {
        let s = HwSlots::default();
        assert_eq!(
            s.guest_debug(false, 0).control,
            0,
            "nothing set: debugging off"
        );
        let step = s.guest_debug(true, 1 << 20);
        assert_eq!(
            step.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | (1 << 20)
        );
        assert_eq!(step.arch.debugreg[7], 0);
        // DR6 of a single step names no slot.
        assert_eq!(s.hit(0xffff_4ff0), None);
    }
}
