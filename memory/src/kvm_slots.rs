//! Tells KVM about guest RAM, one memory slot per region.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use crate::guest_ram::GuestRam;

/// Errors registering memory slots.
#[derive(Debug, thiserror::Error)]
pub enum KvmSlotError {
    /// The host address of a region could not be obtained.
    #[error("guest memory region at {0:#x} has no host mapping")]
    NoHostAddress(u64),
    /// More regions than KVM slots.
    #[error("guest memory needs {needed} memory slots but KVM offers {available}")]
    TooManySlots {
        /// Slots the layout needs.
        needed: usize,
        /// Slots KVM reports.
        available: usize,
    },
    /// KVM_SET_USER_MEMORY_REGION failed.
    #[error("KVM_SET_USER_MEMORY_REGION for slot {slot} ({size:#x} bytes at {guest_addr:#x}) failed: {source}")]
    SetUserMemoryRegion {
        /// The slot number.
        slot: u32,
        /// Guest physical address of the region.
        guest_addr: u64,
        /// Region size.
        size: u64,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
}

/// How the slots are registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotOptions {
    /// KVM_MEM_LOG_DIRTY_PAGES: KVM records every page the guest writes,
    /// read (and cleared) with KVM_GET_DIRTY_LOG per slot; what a diff
    /// snapshot needs. Costs a write-protection fault on the first write
    /// to each page after every read of the log.
    pub log_dirty_pages: bool,
}

/// Registers every region of `ram` with `vm`, slots numbered from 0 in address
/// order. `max_slots` is what `Kvm::get_nr_memslots()` reported. Returns the
/// regions as given to KVM_SET_USER_MEMORY_REGION (for a VMM that shows
/// its steps).
///
/// # Safety
///
/// `ram` must outlive `vm` (or the slots must be removed before `ram` is
/// dropped): KVM keeps using the host mappings after this call returns.
pub unsafe fn register_memory_slots(
    vm: &VmFd,
    ram: &GuestRam,
    max_slots: usize,
) -> Result<Vec<kvm_userspace_memory_region>, KvmSlotError> {
    // SAFETY: the caller's contract is this function's.
    unsafe { register_memory_slots_with(vm, ram, max_slots, SlotOptions::default()) }
}

/// [`register_memory_slots`] with `options` (dirty-page logging).
///
/// # Safety
///
/// As for [`register_memory_slots`]: `ram` must outlive `vm`.
pub unsafe fn register_memory_slots_with(
    vm: &VmFd,
    ram: &GuestRam,
    max_slots: usize,
    options: SlotOptions,
) -> Result<Vec<kvm_userspace_memory_region>, KvmSlotError> {
    let needed = ram.memory().num_regions();
    if needed > max_slots {
        return Err(KvmSlotError::TooManySlots {
            needed,
            available: max_slots,
        });
    }
    let mut registered = Vec::with_capacity(needed);
    for (slot, region) in (0u32..).zip(ram.memory().iter()) {
        let guest_addr = region.start_addr().0;
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| KvmSlotError::NoHostAddress(guest_addr))?;
        let mem_region = kvm_userspace_memory_region {
            slot,
            flags: if options.log_dirty_pages {
                KVM_MEM_LOG_DIRTY_PAGES
            } else {
                0
            },
            guest_phys_addr: guest_addr,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: [host, host + len) is a live mapping owned by `ram.memory()`,
        // and this function's contract makes the caller keep `ram` alive as
        // long as `vm`, so KVM never sees a dangling mapping.
        unsafe { vm.set_user_memory_region(mem_region) }.map_err(|source| {
            KvmSlotError::SetUserMemoryRegion {
                slot,
                guest_addr,
                size: region.len(),
                source,
            }
        })?;
        registered.push(mem_region);
    }
    Ok(registered)
}
