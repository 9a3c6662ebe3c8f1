//! The port-I/O and MMIO bus every vCPU exit is dispatched through.
//!
//! Routing is rust-vmm's `IoManager` (a `BTreeMap` of non-overlapping
//! ranges). This wrapper adds the behaviour of a PC's buses around it:
//! - a read nobody claims returns all ones and a write nobody claims is
//!   dropped, as on an empty ISA bus (and in QEMU, Firecracker, Cloud
//!   Hypervisor); both are logged at debug level;
//! - a port access wider than the device it starts in, or straddling two
//!   devices, is split into byte cycles at consecutive ports, as the ISA bus
//!   does for 8-bit devices;
//! - every access is counted: per port for port I/O, per device range for
//!   claimed MMIO, per 4 KiB page for unclaimed MMIO (bounded, so a guest
//!   scanning the address space cannot grow the table without limit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use vm_device::bus::{MmioAddress, MmioRange, PioAddress, PioAddressOffset, PioRange};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};
use vm_device::{DeviceMmio, DevicePio};

use crate::lock;

/// How many distinct unclaimed MMIO pages are counted separately; beyond
/// this they share one [`BusKey::UnclaimedMmioOther`] counter.
pub const MAX_UNCLAIMED_MMIO_KEYS: usize = 1024;

/// Errors registering devices.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps a registered one.
    #[error("cannot register {name} at {base:#x} (+{len:#x}): the range overlaps {existing}")]
    Overlap {
        /// The device being registered.
        name: String,
        /// Its base.
        base: u64,
        /// Its length.
        len: u64,
        /// The device already there.
        existing: String,
    },
    /// Zero-length range or one that wraps around the address space.
    #[error("cannot register {name}: range {base:#x} (+{len:#x}) is empty or wraps around")]
    InvalidRange {
        /// The device.
        name: String,
        /// Base.
        base: u64,
        /// Length.
        len: u64,
    },
}

/// Whether an access reached a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// One device handled the whole access.
    Claimed,
    /// A port access was split into byte cycles; at least one byte reached a
    /// device.
    Split,
    /// Nobody claimed it: reads returned all ones, writes were dropped.
    Unclaimed,
}

/// What an access counter is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BusKey {
    /// One I/O port.
    Port(u16),
    /// A registered MMIO device range (its base).
    Mmio(u64),
    /// An unclaimed MMIO page (its base, 4 KiB aligned).
    UnclaimedMmioPage(u64),
    /// Unclaimed MMIO pages beyond [`MAX_UNCLAIMED_MMIO_KEYS`].
    UnclaimedMmioOther,
}

/// Access counts for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessCount {
    /// Reads that reached a device.
    pub reads: u64,
    /// Writes that reached a device.
    pub writes: u64,
    /// Reads nobody claimed.
    pub unclaimed_reads: u64,
    /// Writes nobody claimed.
    pub unclaimed_writes: u64,
}

/// One row of [`IoBus::access_counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRow {
    /// What was accessed.
    pub key: BusKey,
    /// The device registered there, if any.
    pub device: Option<String>,
    /// The counts.
    pub count: AccessCount,
}

#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// The PIO and MMIO buses of one VM.
#[derive(Default)]
pub struct IoBus {
    manager: IoManager,
    pio_names: BTreeMap<u16, (u16, String)>,
    mmio_names: BTreeMap<u64, (u64, String)>,
    counts: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    map: BTreeMap<BusKey, AccessCount>,
    unclaimed_pages: usize,
}

impl std::fmt::Debug for IoBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBus")
            .field("pio", &self.pio_names)
            .field("mmio", &self.mmio_names)
            .finish()
    }
}

impl IoBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `device` for ports `[base, base + len)`.
    pub fn register_pio(
        &mut self,
        name: &str,
        base: PioAddress,
        len: u16,
        device: Arc<dyn DevicePio + Send + Sync>,
    ) -> Result<(), BusError> {
        let invalid = || BusError::InvalidRange {
            name: name.to_string(),
            base: u64::from(base.0),
            len: u64::from(len),
        };
        let range = PioRange::new(base, len).map_err(|_| invalid())?;
        self.manager
            .register_pio(range, device)
            .map_err(|_| BusError::Overlap {
                name: name.to_string(),
                base: u64::from(base.0),
                len: u64::from(len),
                existing: overlapping(&self.pio_names, u64::from(base.0), u64::from(len)),
            })?;
        self.pio_names.insert(base.0, (len, name.to_string()));
        Ok(())
    }

    /// Registers `device` for guest-physical addresses `[base, base + len)`.
    pub fn register_mmio(
        &mut self,
        name: &str,
        base: MmioAddress,
        len: u64,
        device: Arc<dyn DeviceMmio + Send + Sync>,
    ) -> Result<(), BusError> {
        let invalid = || BusError::InvalidRange {
            name: name.to_string(),
            base: base.0,
            len,
        };
        let range = MmioRange::new(base, len).map_err(|_| invalid())?;
        self.manager
            .register_mmio(range, device)
            .map_err(|_| BusError::Overlap {
                name: name.to_string(),
                base: base.0,
                len,
                existing: overlapping(&self.mmio_names, base.0, len),
            })?;
        self.mmio_names.insert(base.0, (len, name.to_string()));
        Ok(())
    }

    /// A port read of `data.len()` bytes.
    pub fn pio_read(&self, port: PioAddress, data: &mut [u8]) -> Access {
        let access = match self.manager.pio_read(port, data) {
            Ok(()) => Access::Claimed,
            Err(_) if data.len() > 1 => {
                let mut any = false;
                for (i, byte) in data.iter_mut().enumerate() {
                    let one = std::slice::from_mut(byte);
                    let claimed = byte_lane_port(port, 0, i)
                        .map(PioAddress)
                        .is_some_and(|p| self.manager.pio_read(p, one).is_ok());
                    if !claimed {
                        one[0] = 0xff;
                    }
                    any |= claimed;
                }
                if any {
                    Access::Split
                } else {
                    Access::Unclaimed
                }
            }
            Err(_) => {
                data.fill(0xff);
                Access::Unclaimed
            }
        };
        if access == Access::Unclaimed {
            log::debug!(
                "unclaimed pio read port={:#06x} size={}",
                port.0,
                data.len()
            );
        }
        self.count(BusKey::Port(port.0), Dir::Read, access);
        access
    }

    /// A port write of `data.len()` bytes.
    pub fn pio_write(&self, port: PioAddress, data: &[u8]) -> Access {
        let access = match self.manager.pio_write(port, data) {
            Ok(()) => Access::Claimed,
            Err(_) if data.len() > 1 => {
                let mut any = false;
                for (i, byte) in data.iter().enumerate() {
                    any |= byte_lane_port(port, 0, i).map(PioAddress).is_some_and(|p| {
                        self.manager
                            .pio_write(p, std::slice::from_ref(byte))
                            .is_ok()
                    });
                }
                if any {
                    Access::Split
                } else {
                    Access::Unclaimed
                }
            }
            Err(_) => Access::Unclaimed,
        };
        if access == Access::Unclaimed {
            log::debug!(
                "unclaimed pio write port={:#06x} size={}",
                port.0,
                data.len()
            );
        }
        self.count(BusKey::Port(port.0), Dir::Write, access);
        access
    }

    /// An MMIO read of `data.len()` bytes.
    pub fn mmio_read(&self, addr: MmioAddress, data: &mut [u8]) -> Access {
        let access = match self.manager.mmio_read(addr, data) {
            Ok(()) => Access::Claimed,
            Err(_) => {
                data.fill(0xff);
                log::debug!("unclaimed mmio read addr={:#x} size={}", addr.0, data.len());
                Access::Unclaimed
            }
        };
        self.count(self.mmio_key(addr, access), Dir::Read, access);
        access
    }

    /// An MMIO write of `data.len()` bytes.
    pub fn mmio_write(&self, addr: MmioAddress, data: &[u8]) -> Access {
        let access = match self.manager.mmio_write(addr, data) {
            Ok(()) => Access::Claimed,
            Err(_) => {
                log::debug!(
                    "unclaimed mmio write addr={:#x} size={}",
                    addr.0,
                    data.len()
                );
                Access::Unclaimed
            }
        };
        self.count(self.mmio_key(addr, access), Dir::Write, access);
        access
    }

    /// Every counter, with the device registered at each key.
    pub fn access_counts(&self) -> Vec<AccessRow> {
        lock(&self.counts)
            .map
            .iter()
            .map(|(key, count)| AccessRow {
                key: *key,
                device: self.device_name(*key),
                count: *count,
            })
            .collect()
    }

    /// The name of the device registered at `port`, if any.
    pub fn pio_device_name(&self, port: u16) -> Option<&str> {
        self.pio_names
            .range(..=port)
            .next_back()
            .filter(|(base, (len, _))| u32::from(port) < u32::from(**base) + u32::from(*len))
            .map(|(_, (_, n))| n.as_str())
    }

    /// The name and base of the device registered at `addr`, if any.
    pub fn mmio_device_name(&self, addr: u64) -> Option<(&str, u64)> {
        self.mmio_names
            .range(..=addr)
            .next_back()
            .filter(|(base, (len, _))| addr - **base < *len)
            .map(|(base, (_, n))| (n.as_str(), *base))
    }

    fn device_name(&self, key: BusKey) -> Option<String> {
        match key {
            BusKey::Port(p) => self.pio_device_name(p).map(str::to_string),
            BusKey::Mmio(a) => self.mmio_names.get(&a).map(|(_, n)| n.clone()),
            _ => None,
        }
    }

    fn mmio_key(&self, addr: MmioAddress, access: Access) -> BusKey {
        if access == Access::Unclaimed {
            return BusKey::UnclaimedMmioPage(addr.0 & !0xfff);
        }
        match self.manager.mmio_device(addr) {
            Some((range, _)) => BusKey::Mmio(range.base().0),
            None => BusKey::UnclaimedMmioPage(addr.0 & !0xfff),
        }
    }

    fn count(&self, key: BusKey, dir: Dir, access: Access) {
        let mut counts = lock(&self.counts);
        let key = match key {
            BusKey::UnclaimedMmioPage(_) if !counts.map.contains_key(&key) => {
                if counts.unclaimed_pages >= MAX_UNCLAIMED_MMIO_KEYS {
                    BusKey::UnclaimedMmioOther
                } else {
                    counts.unclaimed_pages += 1;
                    key
                }
            }
            k => k,
        };
        let c = counts.map.entry(key).or_default();
        let slot = match (dir, access == Access::Unclaimed) {
            (Dir::Read, false) => &mut c.reads,
            (Dir::Write, false) => &mut c.writes,
            (Dir::Read, true) => &mut c.unclaimed_reads,
            (Dir::Write, true) => &mut c.unclaimed_writes,
        };
        *slot = slot.saturating_add(1);
    }
}

/// The port byte `i` of an access at `base + offset` lands on, as in an ISA
/// byte cycle; `None` past port 0xffff (accesses never wrap around). The bus
/// splits accesses with it, and devices that decode several ports handle a
/// wide access byte by byte with it.
pub(crate) fn byte_lane_port(base: PioAddress, offset: PioAddressOffset, i: usize) -> Option<u16> {
    u64::from(base.0)
        .checked_add(u64::from(offset))?
        .checked_add(i as u64)
        .and_then(|p| u16::try_from(p).ok())
}

fn overlapping<K: Copy + Into<u64>, L: Copy + Into<u64>>(
    names: &BTreeMap<K, (L, String)>,
    base: u64,
    len: u64,
) -> String {
    names
        .iter()
        .find(|(b, (l, _))| {
            let (b, l) = ((**b).into(), (*l).into());
            base < b.saturating_add(l) && b < base.saturating_add(len)
        })
        .map(|(b, (l, n))| format!("{n} at {:#x} (+{:#x})", (*b).into(), (*l).into()))
        .unwrap_or_else(|| "another device".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_device::bus::{MmioAddressOffset, PioAddressOffset};

    /// Remembers the last write and answers reads with its offset.
    #[derive(Default)]
    struct Probe {
        writes: Mutex<Vec<(u64, Vec<u8>)>>,
    }
    impl DevicePio for Probe {
        fn pio_read(&self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
            data.fill(0x10 + offset as u8);
        }
        fn pio_write(&self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
            self.writes
                .lock()
                .unwrap()
                .push((u64::from(offset), data.to_vec()));
        }
    }
    impl DeviceMmio for Probe {
        fn mmio_read(&self, _: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn mmio_write(&self, _: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
            self.writes.lock().unwrap().push((offset, data.to_vec()));
        }
    }

    #[test]
    fn test_bus_unclaimed_reads_all_ones_and_counts() {
        let bus = IoBus::new();
        for size in [1usize, 2, 4] {
            let mut d = vec![0u8; size];
            assert_eq!(bus.pio_read(PioAddress(0x64), &mut d), Access::Unclaimed);
            assert!(d.iter().all(|b| *b == 0xff));
        }
        assert_eq!(bus.pio_write(PioAddress(0x64), &[1]), Access::Unclaimed);
        let rows = bus.access_counts();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, BusKey::Port(0x64));
        assert_eq!(
            (
                rows[0].count.unclaimed_reads,
                rows[0].count.unclaimed_writes
            ),
            (3, 1)
        );
    }

    #[test]
    fn test_bus_routes_offset_and_names_device() {
        let mut bus = IoBus::new();
        let p = Arc::new(Probe::default());
        bus.register_pio("probe", PioAddress(0x3f8), 8, p.clone())
            .unwrap();
        let mut d = [0u8; 1];
        assert_eq!(bus.pio_read(PioAddress(0x3fd), &mut d), Access::Claimed);
        assert_eq!(d[0], 0x15);
        bus.pio_write(PioAddress(0x3f9), &[7]);
        assert_eq!(*p.writes.lock().unwrap(), vec![(1, vec![7])]);
        let rows = bus.access_counts();
        assert_eq!(rows[0].device.as_deref(), Some("probe"));
        assert_eq!(bus.pio_device_name(0x3f8), Some("probe"));
        assert_eq!(bus.pio_device_name(0x3ff), Some("probe"));
        assert_eq!(bus.pio_device_name(0x400), None);
        assert_eq!(bus.pio_device_name(0x3f7), None);
    }

    #[test]
    fn test_bus_mmio_device_name_covers_the_range() {
        let mut bus = IoBus::new();
        bus.register_mmio(
            "probe",
            MmioAddress(0xd000_0000),
            0x200,
            Arc::new(Probe::default()),
        )
        .unwrap();
        assert_eq!(
            bus.mmio_device_name(0xd000_01ff),
            Some(("probe", 0xd000_0000))
        );
        assert_eq!(bus.mmio_device_name(0xd000_0200), None);
        assert_eq!(bus.mmio_device_name(0xcfff_ffff), None);
        assert_eq!(bus.mmio_device_name(u64::MAX), None);
    }

    #[test]
    fn test_bus_splits_straddling_port_access_into_bytes() {
        let mut bus = IoBus::new();
        let p = Arc::new(Probe::default());
        bus.register_pio("probe", PioAddress(0xe9), 1, p.clone())
            .unwrap();
        let mut d = [0u8; 4];
        assert_eq!(bus.pio_read(PioAddress(0xe8), &mut d), Access::Split);
        assert_eq!(d, [0xff, 0x10, 0xff, 0xff]);
        assert_eq!(
            bus.pio_write(PioAddress(0xe9), &[0x41, 0x42]),
            Access::Split
        );
        assert_eq!(*p.writes.lock().unwrap(), vec![(0, vec![0x41])]);
        // The top of the port space: no wrap-around to port 0.
        let mut d = [0u8; 4];
        assert_eq!(bus.pio_read(PioAddress(0xfffe), &mut d), Access::Unclaimed);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn test_bus_rejects_overlap_with_names() {
        let mut bus = IoBus::new();
        bus.register_pio("uart", PioAddress(0x3f8), 8, Arc::new(Probe::default()))
            .unwrap();
        let e = bus
            .register_pio("other", PioAddress(0x3ff), 2, Arc::new(Probe::default()))
            .unwrap_err();
        assert!(e.to_string().contains("uart at 0x3f8"), "{e}");
        let e = bus
            .register_pio("zero", PioAddress(0x10), 0, Arc::new(Probe::default()))
            .unwrap_err();
        assert!(matches!(e, BusError::InvalidRange { .. }));
    }

    #[test]
    fn test_bus_mmio_claimed_and_unclaimed() {
        let mut bus = IoBus::new();
        let p = Arc::new(Probe::default());
        bus.register_mmio("probe", MmioAddress(0xd000_0000), 0x1000, p.clone())
            .unwrap();
        let mut d = [0u8; 8];
        assert_eq!(
            bus.mmio_read(MmioAddress(0xd000_0008), &mut d),
            Access::Claimed
        );
        assert_eq!(d, [8; 8]);
        // Straddling the end of the device: unclaimed, nothing reaches it.
        assert_eq!(
            bus.mmio_write(MmioAddress(0xd000_0ffc), &[1; 8]),
            Access::Unclaimed
        );
        assert!(p.writes.lock().unwrap().is_empty());
        assert_eq!(
            bus.mmio_read(MmioAddress(u64::MAX - 3), &mut d),
            Access::Unclaimed
        );
        assert_eq!(d, [0xff; 8]);
    }

    #[test]
    fn test_bus_unclaimed_mmio_keys_are_bounded() {
        let bus = IoBus::new();
        for page in 0..(MAX_UNCLAIMED_MMIO_KEYS as u64 + 50) {
            bus.mmio_write(MmioAddress(page << 12), &[0]);
        }
        let rows = bus.access_counts();
        assert_eq!(rows.len(), MAX_UNCLAIMED_MMIO_KEYS + 1);
        let other = rows
            .iter()
            .find(|r| r.key == BusKey::UnclaimedMmioOther)
            .unwrap();
        assert_eq!(other.count.unclaimed_writes, 50);
    }
}
