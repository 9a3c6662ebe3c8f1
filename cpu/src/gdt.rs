//! The boot GDT: flat descriptors for protected- and long-mode entry, and
//! their conversion to the `kvm_segment` form KVM_SET_SREGS takes.
//!
//! Selectors follow the Linux x86 boot protocol (`__BOOT_CS` = 0x10,
//! `__BOOT_DS` = 0x18), which also satisfies Multiboot's "any flat 4 GiB
//! segments" rule, so one table serves every format.

use kvm_bindings::kvm_segment;

/// Index of the 32-bit flat code segment (selector 0x08).
pub const CODE32_INDEX: u16 = 1;
/// Index of the boot code segment (selector 0x10): 32-bit code in protected
/// mode, 64-bit code in long mode.
pub const BOOT_CS_INDEX: u16 = 2;
/// Index of the flat data segment (selector 0x18).
pub const BOOT_DS_INDEX: u16 = 3;
/// Index of the TSS descriptor (selector 0x20); VMX requires a usable TR in
/// protected mode even though the guest never task-switches.
pub const TSS_INDEX: u16 = 4;

/// Access/flags for a 4 GiB flat 32-bit code segment (G, D, P, S, type 0xb).
pub const FLAGS_CODE32: u16 = 0xc09b;
/// Access/flags for a 64-bit code segment (G, L, P, S, type 0xb).
pub const FLAGS_CODE64: u16 = 0xa09b;
/// Access/flags for a 4 GiB flat data segment (G, B, P, S, type 0x3).
pub const FLAGS_DATA: u16 = 0xc093;
/// Access/flags for a busy 32-bit TSS (P, type 0xb).
pub const FLAGS_TSS: u16 = 0x008b;

/// Encodes a segment descriptor from its access/flags word (bits 0-7 access
/// byte, bits 12-15 G/DB/L/AVL), base and 20-bit limit.
pub fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0xffff)
}

/// Decodes descriptor `entry`, found at GDT index `index`, into the segment
/// register state KVM expects (limit scaled by G, `unusable` from P).
pub fn kvm_segment_from(entry: u64, index: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let g = bit(55);
    let present = bit(47);
    kvm_segment {
        base,
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// The boot GDT for a mode: `long` picks a 64-bit boot code segment.
pub fn boot_gdt(long: bool) -> [u64; 5] {
    [
        0,
        descriptor(FLAGS_CODE32, 0, 0xfffff),
        descriptor(if long { FLAGS_CODE64 } else { FLAGS_CODE32 }, 0, 0xfffff),
        descriptor(FLAGS_DATA, 0, 0xfffff),
        descriptor(FLAGS_TSS, 0, 0x67),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_descriptor_known_values() {
        // Values from the Linux/Firecracker boot GDTs.
        assert_eq!(descriptor(FLAGS_CODE64, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(descriptor(FLAGS_DATA, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(descriptor(FLAGS_CODE32, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn test_segment_round_trip() {
        let d = descriptor(FLAGS_DATA, 0x1234_5678, 0xabcde);
        let s = kvm_segment_from(d, BOOT_DS_INDEX);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcd_efff);
        assert_eq!(s.selector, 0x18);
        assert_eq!(
            (s.type_, s.present, s.s, s.db, s.g, s.l),
            (3, 1, 1, 1, 1, 0)
        );
        assert_eq!(s.unusable, 0);
        let cs = kvm_segment_from(descriptor(FLAGS_CODE64, 0, 0xfffff), BOOT_CS_INDEX);
        assert_eq!((cs.l, cs.db, cs.type_), (1, 0, 0xb));
        assert_eq!(kvm_segment_from(0, 0).unusable, 1);
    }
}
