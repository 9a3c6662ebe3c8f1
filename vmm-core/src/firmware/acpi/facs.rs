//! The FACS as firmware uses it at an S3 wake (ACPI 6.5 §5.2.10, Table
//! 5.14): where it is (found once, right after the tables are written, as
//! firmware knows where it put its own FACS) and which waking vector the OS
//! left in it (read at the wake, from guest memory).
//!
//! Choosing the vector (§5.2.10, "Firmware_Waking_Vector" and
//! "X_Firmware_Waking_Vector"): a FACS of version 1 or later with a
//! non-zero X_Firmware_Waking_Vector is entered in protected mode (64-bit
//! only if the firmware sets 64BIT_WAKE_SUPPORTED_F, which this one does
//! not: 32-bit flat, paging off); otherwise a non-zero
//! Firmware_Waking_Vector is entered in real mode, CS:IP = (vector >> 4):
//! (vector & 0xf). With neither, firmware boots normally: for this VMM, a
//! reset ([`WakeVectorError::None`]).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_cpu::WakeEntry;

/// FACS field offsets (Table 5.14).
const SIGNATURE: usize = 0;
const LENGTH: usize = 4;
const FIRMWARE_WAKING_VECTOR: usize = 12;
const X_FIRMWARE_WAKING_VECTOR: usize = 24;
const VERSION: usize = 32;
const OSPM_FLAGS: usize = 36;
/// Bytes of a version 1+ FACS that matter here.
pub const FACS_LEN: usize = 64;
/// OSPM flag: the OS wants its X_Firmware_Waking_Vector entered in 64-bit
/// mode.
const OSPM_64BIT_WAKE_F: u32 = 1 << 0;
/// Real mode reaches the first MiB only.
const REAL_MODE_LIMIT: u64 = 1 << 20;

/// FADT offsets of FIRMWARE_CTRL and X_FIRMWARE_CTRL (Table 5.9); RSDP
/// offsets of the RSDT and XSDT addresses (Table 5.3).
const FADT_FIRMWARE_CTRL: u64 = 36;
const FADT_X_FIRMWARE_CTRL: u64 = 132;
const RSDP_XSDT: u64 = 24;
const SDT_HEADER_LEN: u64 = 36;

/// Why the OS's waking vector cannot be entered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WakeVectorError {
    /// The platform has no FACS (no ACPI tables).
    #[error("the platform has no FACS")]
    NoFacs,
    /// The FACS could not be read, or its signature is gone.
    #[error("the FACS at {0:#x} is unreadable or no longer says 'FACS'")]
    BadFacs(u64),
    /// Both vectors are zero.
    #[error("the OS left no waking vector in the FACS")]
    None,
    /// A real-mode vector at or above 1 MiB.
    #[error("Firmware_Waking_Vector {0:#x} is not below 1 MiB, out of real mode's reach")]
    RealModeVector(u64),
    /// A protected-mode vector at or above 4 GiB.
    #[error("X_Firmware_Waking_Vector {0:#x} is not below 4 GiB, out of 32-bit reach")]
    ProtectedVector(u64),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// The wake entry the FACS bytes `facs` ask for.
pub fn wake_entry(facs: &[u8; FACS_LEN], at: u64) -> Result<WakeEntry, WakeVectorError> {
    if &facs[SIGNATURE..SIGNATURE + 4] != b"FACS" || (u32_at(facs, LENGTH) as usize) < 32 {
        return Err(WakeVectorError::BadFacs(at));
    }
    let x = u64_at(facs, X_FIRMWARE_WAKING_VECTOR);
    if facs[VERSION] >= 1 && u32_at(facs, LENGTH) as usize >= 40 && x != 0 {
        if u32_at(facs, OSPM_FLAGS) & OSPM_64BIT_WAKE_F != 0 {
            // 64BIT_WAKE_SUPPORTED_F is clear: the flag is not the OS's to
            // set. Enter the vector as the spec's default, 32-bit.
            log::warn!("S3 wake: the OS set 64BIT_WAKE_F, which this firmware does not support; entering {x:#x} in 32-bit mode");
        }
        let vector = u32::try_from(x).map_err(|_| WakeVectorError::ProtectedVector(x))?;
        return Ok(WakeEntry::Protected32 { vector });
    }
    match u64::from(u32_at(facs, FIRMWARE_WAKING_VECTOR)) {
        0 => Err(WakeVectorError::None),
        v if v >= REAL_MODE_LIMIT => Err(WakeVectorError::RealModeVector(v)),
        v => Ok(WakeEntry::RealMode { vector: v as u32 }),
    }
}

/// Reads the FACS at `facs` from guest memory and chooses the wake entry.
pub fn read_wake_entry<M: GuestMemoryBackend>(
    mem: &M,
    facs: Option<GuestAddress>,
) -> Result<WakeEntry, WakeVectorError> {
    let at = facs.ok_or(WakeVectorError::NoFacs)?;
    let mut bytes = [0u8; FACS_LEN];
    mem.read_slice(&mut bytes, at)
        .map_err(|_| WakeVectorError::BadFacs(at.0))?;
    wake_entry(&bytes, at.0)
}

/// Where the FADT that the RSDP at `rsdp` leads to (through the XSDT) puts
/// the FACS, as written by [`super::write_acpi_tables`]: read back once at
/// creation, before the guest runs.
pub fn find_facs<M: GuestMemoryBackend>(mem: &M, rsdp: GuestAddress) -> Option<GuestAddress> {
    let read_u32 = |a: u64| mem.read_obj::<u32>(GuestAddress(a)).ok();
    let read_u64 = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).ok();
    let xsdt = read_u64(rsdp.0.checked_add(RSDP_XSDT)?)?;
    let len = u64::from(read_u32(xsdt.checked_add(4)?)?);
    let entries = len.checked_sub(SDT_HEADER_LEN)? / 8;
    (0..entries.min(64)).find_map(|i| {
        let table = read_u64(xsdt + SDT_HEADER_LEN + 8 * i)?;
        if read_u32(table)? != u32::from_le_bytes(*b"FACP") {
            return None;
        }
        let x = read_u64(table.checked_add(FADT_X_FIRMWARE_CTRL)?).unwrap_or(0);
        let addr = if x != 0 {
            x
        } else {
            u64::from(read_u32(table.checked_add(FADT_FIRMWARE_CTRL)?)?)
        };
        (addr != 0).then_some(GuestAddress(addr))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facs(version: u8, fwv: u32, xfwv: u64, ospm: u32) -> [u8; FACS_LEN] {
        let mut f = [0u8; FACS_LEN];
        f[0..4].copy_from_slice(b"FACS");
        f[4..8].copy_from_slice(&64u32.to_le_bytes());
        f[12..16].copy_from_slice(&fwv.to_le_bytes());
        f[24..32].copy_from_slice(&xfwv.to_le_bytes());
        f[32] = version;
        f[36..40].copy_from_slice(&ospm.to_le_bytes());
        f
    }

    #[test]
    fn test_wake_entry_picks_the_vector_as_the_spec_says() {
        assert_eq!(
            wake_entry(&facs(2, 0x1000, 0, 0), 0),
            Ok(WakeEntry::RealMode { vector: 0x1000 })
        );
        assert_eq!(
            wake_entry(&facs(2, 0x9_a000, 0x10_0000, 0), 0),
            Ok(WakeEntry::Protected32 { vector: 0x10_0000 })
        );
        assert_eq!(
            wake_entry(&facs(2, 0, 0x10_0000, OSPM_64BIT_WAKE_F), 0),
            Ok(WakeEntry::Protected32 { vector: 0x10_0000 })
        );
        // Version 0 has no X_ field: the real-mode vector.
        assert_eq!(
            wake_entry(&facs(0, 0x2000, 0x10_0000, 0), 0),
            Ok(WakeEntry::RealMode { vector: 0x2000 })
        );
        assert_eq!(wake_entry(&facs(2, 0, 0, 0), 0), Err(WakeVectorError::None));
        assert_eq!(
            wake_entry(&facs(2, 0x10_0000, 0, 0), 0),
            Err(WakeVectorError::RealModeVector(0x10_0000))
        );
        assert_eq!(
            wake_entry(&facs(2, 0, 1 << 32, 0), 0),
            Err(WakeVectorError::ProtectedVector(1 << 32))
        );
        let mut bad = facs(2, 0x1000, 0, 0);
        bad[0] = b'X';
        assert_eq!(wake_entry(&bad, 0x40), Err(WakeVectorError::BadFacs(0x40)));
    }

    #[test]
    fn test_find_facs_in_written_tables_and_read_its_vector() {
        use crate::firmware::{write_acpi_tables, PlatformInfo};
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let rsdp = write_acpi_tables(&mem, &PlatformInfo::pc(2, 5)).unwrap();
        let at = find_facs(&mem, rsdp).expect("the FADT points at the FACS");
        assert_eq!(at.0 % 64, 0, "64-byte aligned");
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, at).unwrap();
        assert_eq!(&sig, b"FACS");
        // Nothing set yet: no vector.
        assert_eq!(read_wake_entry(&mem, Some(at)), Err(WakeVectorError::None));
        mem.write_obj(0x1000u32, GuestAddress(at.0 + 12)).unwrap();
        assert_eq!(
            read_wake_entry(&mem, Some(at)),
            Ok(WakeEntry::RealMode { vector: 0x1000 })
        );
        assert_eq!(read_wake_entry(&mem, None), Err(WakeVectorError::NoFacs));
        assert_eq!(
            read_wake_entry(&mem, Some(GuestAddress(1 << 40))),
            Err(WakeVectorError::BadFacs(1 << 40))
        );
        // No tables at all.
        let empty =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert_eq!(find_facs(&empty, rsdp), None);
    }
}
