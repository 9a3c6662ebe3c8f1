//! Guest memory as gdb addresses it: linear (virtual) addresses, through
//! the stopped vCPU's page tables (vmm-cpu's walker,
//! `vmm_cpu::fallback::address::debugger_translate`: no permission checks,
//! no accessed/dirty bits set), or physical ones when paging is off.
//! Only guest RAM is touched: an address the tables do not map, or that
//! maps outside RAM (a device window), ends the access there.

use kvm_bindings::kvm_sregs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_cpu::fallback::address::debugger_translate;

/// The granule accesses are split at: every page size the MMU has is a
/// multiple of it.
const PAGE: u64 = 4096;
/// EFER.LMA and CR4.LA57: which addresses are canonical.
const EFER_LMA: u64 = 1 << 10;
const CR4_LA57: u64 = 1 << 12;

/// Why an access stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The guest's page tables do not map the address (or it is not
    /// canonical).
    #[error("guest address {0:#x} is not mapped by the guest's page tables")]
    NotMapped(u64),
    /// The address maps to guest-physical memory outside RAM.
    #[error("guest address {addr:#x} maps to {gpa:#x}, outside guest RAM")]
    OutsideRam {
        /// The linear address.
        addr: u64,
        /// Where it maps.
        gpa: u64,
    },
}

/// The guest's view of memory at one stop.
pub struct GuestView<'a> {
    /// Guest RAM.
    pub mem: &'a GuestMemoryMmap,
    /// The vCPU's special registers (CR0, CR3, CR4, EFER).
    pub sregs: &'a kvm_sregs,
    /// The guest's MAXPHYADDR.
    pub phys_bits: u32,
}

impl GuestView<'_> {
    fn canonical(&self, la: u64) -> bool {
        if self.sregs.efer & EFER_LMA == 0 {
            return la <= u64::from(u32::MAX);
        }
        let bits = if self.sregs.cr4 & CR4_LA57 != 0 {
            57
        } else {
            48
        };
        let shift = 64 - bits;
        (((la << shift) as i64) >> shift) as u64 == la
    }

    /// The guest-physical address of `la`.
    fn gpa(&self, la: u64) -> Result<u64, MemoryError> {
        if !self.canonical(la) {
            return Err(MemoryError::NotMapped(la));
        }
        debugger_translate(self.mem, self.sregs, self.phys_bits, la)
            .map_err(|_| MemoryError::NotMapped(la))
    }

    /// Calls `f(gpa, offset, len)` for each page-bounded piece of
    /// `[addr, addr + len)`, stopping at the first error.
    fn pieces(
        &self,
        addr: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < len {
            let la = addr.wrapping_add(done as u64);
            let room = (PAGE - la % PAGE) as usize;
            let n = room.min(len - done);
            let gpa = self.gpa(la)?;
            f(gpa, done, n).map_err(|_| MemoryError::OutsideRam { addr: la, gpa })?;
            done += n;
        }
        Ok(())
    }

    /// Reads from `addr` into `buf`; returns how many bytes were read
    /// before the first byte that could not be (all of them, normally).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> usize {
        let mut read = 0;
        let _ = self.pieces(addr, buf.len(), |gpa, at, n| {
            self.mem
                .read_slice(&mut buf[at..at + n], GuestAddress(gpa))
                .map_err(|_| MemoryError::NotMapped(gpa))?;
            read = at + n;
            Ok(())
        });
        read
    }

    /// Writes `data` at `addr`: all of it, or an error naming the first
    /// address that could not be written (the bytes before it are
    /// written).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.pieces(addr, data.len(), |gpa, at, n| {
            self.mem
                .write_slice(&data[at..at + n], GuestAddress(gpa))
                .map_err(|_| MemoryError::NotMapped(gpa))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR0_PE: u64 = 1;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    /// Long mode: PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000; virtual
    /// 0x40_0000 (2 MiB page) -> physical 0x20_0000; 4 KiB pages through
    /// the PT at 0x4000: virtual 0x1000 -> 0x30_0000, 0x2000 -> 0x5000,
    /// 0x3000 -> 0x100_0000 (outside RAM); 0x4000 not present.
    fn long_mode(mem: &GuestMemoryMmap) -> kvm_sregs {
        mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x4003u64, GuestAddress(0x3000)).unwrap();
        mem.write_obj(0x20_0083u64, GuestAddress(0x3010)).unwrap();
        mem.write_obj(0x30_0003u64, GuestAddress(0x4008)).unwrap();
        mem.write_obj(0x5003u64, GuestAddress(0x4010)).unwrap();
        mem.write_obj(0x100_0003u64, GuestAddress(0x4018)).unwrap();
        kvm_sregs {
            cr0: CR0_PE | CR0_PG,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        }
    }

    #[test]
    fn test_memory_reads_through_the_page_tables_across_pages() {
        let mem = ram();
        let sregs = long_mode(&mem);
        let view = GuestView {
            mem: &mem,
            sregs: &sregs,
            phys_bits: 40,
        };
        mem.write_slice(b"abcd", GuestAddress(0x20_0010)).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(view.read(0x40_0010, &mut buf), 4);
        assert_eq!(&buf, b"abcd");
        // The last two bytes of virtual page 0x1000 and the first two of
        // 0x2000 come from physical pages far apart.
        mem.write_slice(b"xy", GuestAddress(0x30_0ffe)).unwrap();
        mem.write_slice(b"zw", GuestAddress(0x5000)).unwrap();
        assert_eq!(view.read(0x1ffe, &mut buf), 4);
        assert_eq!(&buf, b"xyzw");
        // A write across the same boundary lands in both.
        view.write(0x1fff, b"12").unwrap();
        let mut two = [0u8; 2];
        mem.read_slice(&mut two[..1], GuestAddress(0x30_0fff))
            .unwrap();
        mem.read_slice(&mut two[1..], GuestAddress(0x5000)).unwrap();
        assert_eq!(&two, b"12");
    }

    #[test]
    fn test_memory_stops_at_unmapped_outside_ram_and_non_canonical() {
        let mem = ram();
        let sregs = long_mode(&mem);
        let view = GuestView {
            mem: &mem,
            sregs: &sregs,
            phys_bits: 40,
        };
        let mut buf = [0u8; 8];
        // 0x2ffc..0x3000 is RAM, 0x3000.. maps outside it.
        assert_eq!(view.read(0x2ffc, &mut buf), 4);
        assert_eq!(
            view.write(0x2ffc, &buf),
            Err(MemoryError::OutsideRam {
                addr: 0x3000,
                gpa: 0x100_0000
            })
        );
        assert_eq!(view.read(0x4000, &mut buf), 0, "not present");
        assert_eq!(
            view.write(0x4000, &buf),
            Err(MemoryError::NotMapped(0x4000))
        );
        assert_eq!(
            view.read(0x0000_8000_0000_0000, &mut buf),
            0,
            "non-canonical"
        );
    }

    #[test]
    fn test_memory_paging_off_is_physical() {
        let mem = ram();
        let sregs = kvm_sregs {
            cr0: CR0_PE,
            ..Default::default()
        };
        let view = GuestView {
            mem: &mem,
            sregs: &sregs,
            phys_bits: 36,
        };
        view.write(0x7000, b"hi").unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(view.read(0x7000, &mut buf), 2);
        assert_eq!(&buf, b"hi");
        assert_eq!(view.read(0x3f_ffff, &mut buf), 1, "RAM ends after one byte");
    }
}
