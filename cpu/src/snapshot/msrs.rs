//! The MSRs a snapshot holds: which ones, and how to read and write them.
//!
//! The list is KVM's own: KVM_GET_MSR_INDEX_LIST (the MSRs KVM saves and
//! restores for migration) plus KVM_GET_MSR_FEATURE_INDEX_LIST (feature
//! MSRs such as IA32_ARCH_CAPABILITIES, which a guest reads and a restore
//! must give back unchanged). KVM_GET_MSRS and KVM_SET_MSRS take at most
//! [`KVM_MAX_MSR_ENTRIES`] entries a call and stop at the first MSR they
//! refuse, returning how many they did; reads use that to skip exactly
//! the refused MSR and go on, writes report it.
//!
//! Some MSRs of the list cannot be restored on a given vCPU: KVM refuses
//! host writes to MSRs whose feature the vCPU's CPUID hides (the
//! paravirtual MSR_KVM_POLL_CONTROL when the hypercall features are off,
//! say), and nested hosts refuse a few more. [`probe_msrs`] finds them
//! once, on a vCPU that has not run yet, so snapshots save exactly the
//! MSRs a restore can write back.

use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{kvm_msr_entry, Msrs, KVM_MAX_MSR_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use super::error::VcpuStateError;

/// IA32_TSC.
pub const MSR_IA32_TSC: u32 = 0x10;
/// IA32_TSC_DEADLINE: written after IA32_TSC, because KVM arms the LAPIC
/// timer from the deadline against the current TSC at the time of the
/// write (a deadline restored before the TSC fires at the wrong time or
/// never).
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;

/// The MSRs to save on this host, in KVM's order, without duplicates.
pub fn msrs_to_save(kvm: &Kvm) -> Result<Vec<u32>, kvm_ioctls::Error> {
    let mut list: Vec<u32> = kvm.get_msr_index_list()?.as_slice().to_vec();
    // Older kernels lack the feature list: the index list alone is what
    // they can restore.
    if let Ok(features) = kvm.get_msr_feature_index_list() {
        for &m in features.as_slice() {
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
    Ok(list)
}

/// Set once the refused MSRs have been logged: they are the same for
/// every vCPU and every snapshot on a host.
static SKIPPED_LOGGED: AtomicBool = AtomicBool::new(false);

fn msrs_of(index: u64, entries: &[kvm_msr_entry]) -> Result<Msrs, VcpuStateError> {
    Msrs::from_entries(entries).map_err(|_| VcpuStateError::TooManyEntries {
        index,
        what: "an MSR batch",
        len: entries.len(),
        max: KVM_MAX_MSR_ENTRIES,
    })
}

/// Reads every MSR of `list` from vCPU `index`: the values read, and the
/// MSRs the host refused (left out, logged once per process).
pub fn read_msrs(
    fd: &VcpuFd,
    index: u64,
    list: &[u32],
) -> Result<(Vec<kvm_msr_entry>, Vec<u32>), VcpuStateError> {
    let mut read = Vec::with_capacity(list.len());
    let mut skipped = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(KVM_MAX_MSR_ENTRIES)];
        let entries: Vec<kvm_msr_entry> = batch
            .iter()
            .map(|&m| kvm_msr_entry {
                index: m,
                ..Default::default()
            })
            .collect();
        let mut msrs = msrs_of(index, &entries)?;
        let n = fd
            .get_msrs(&mut msrs)
            .map_err(|source| VcpuStateError::Ioctl {
                index,
                op: "KVM_GET_MSRS",
                source,
            })?
            .min(batch.len());
        read.extend_from_slice(&msrs.as_slice()[..n]);
        if n < batch.len() {
            // KVM stopped at entry n: skip it alone and go on after it.
            skipped.push(batch[n]);
            rest = &rest[n + 1..];
        } else {
            rest = &rest[n..];
        }
    }
    Ok((read, skipped))
}

/// Which MSRs of `list` vCPU `fd` (CPUID set, never run) lets the VMM both
/// read and write back: the list to save. Each MSR is written with the
/// value just read, which on a vCPU that has not run changes nothing;
/// IA32_TSC is kept without a write (writing it would desynchronise the
/// vCPUs' TSCs). Returns the usable MSRs in list order and the refused
/// ones, which are logged once per process.
pub fn probe_msrs(
    fd: &VcpuFd,
    index: u64,
    list: &[u32],
) -> Result<(Vec<u32>, Vec<u32>), VcpuStateError> {
    let (read, mut refused) = read_msrs(fd, index, list)?;
    let mut pending: Vec<kvm_msr_entry> = read
        .into_iter()
        .filter(|e| e.index != MSR_IA32_TSC)
        .collect();
    while !pending.is_empty() {
        let batch = &pending[..pending.len().min(KVM_MAX_MSR_ENTRIES)];
        let msrs = msrs_of(index, batch)?;
        let n = fd
            .set_msrs(&msrs)
            .map_err(|source| VcpuStateError::Ioctl {
                index,
                op: "KVM_SET_MSRS",
                source,
            })?
            .min(batch.len());
        if n < batch.len() {
            refused.push(batch[n].index);
            pending.drain(..=n);
        } else {
            pending.drain(..n);
        }
    }
    let usable = list
        .iter()
        .copied()
        .filter(|m| !refused.contains(m))
        .collect();
    if !refused.is_empty() && !SKIPPED_LOGGED.swap(true, Ordering::Relaxed) {
        log::info!(
            "snapshots leave out MSRs {refused:#x?} of KVM's save list: this host or this \
             vCPU's CPUID does not let them be read and restored"
        );
    }
    Ok((usable, refused))
}

/// The order MSRs are written back in: everything but the TSC deadline,
/// then the TSC deadline (see [`MSR_IA32_TSC_DEADLINE`]).
pub fn restore_order(entries: &[kvm_msr_entry]) -> Vec<kvm_msr_entry> {
    let (deferred, first): (Vec<kvm_msr_entry>, Vec<kvm_msr_entry>) = entries
        .iter()
        .partition(|e| e.index == MSR_IA32_TSC_DEADLINE);
    first.into_iter().chain(deferred).collect()
}

/// Writes `entries` to vCPU `index` in [`restore_order`]; an MSR the host
/// refuses is an error naming it.
pub fn write_msrs(
    fd: &VcpuFd,
    index: u64,
    entries: &[kvm_msr_entry],
) -> Result<(), VcpuStateError> {
    let ordered = restore_order(entries);
    for batch in ordered.chunks(KVM_MAX_MSR_ENTRIES) {
        let msrs = msrs_of(index, batch)?;
        let n = fd.set_msrs(&msrs).map_err(|source| VcpuStateError::Ioctl {
            index,
            op: "KVM_SET_MSRS",
            source,
        })?;
        if let Some(refused) = batch.get(n) {
            return Err(VcpuStateError::MsrRefused {
                index,
                msr: refused.index,
                value: refused.data,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u32, data: u64) -> kvm_msr_entry {
        kvm_msr_entry {
            index,
            data,
            ..Default::default()
        }
    }

    #[test]
    fn test_restore_order_puts_tsc_deadline_last() {
        let entries = [
            e(MSR_IA32_TSC_DEADLINE, 5),
            e(0x1b, 1),
            e(MSR_IA32_TSC, 2),
            e(0xc000_0080, 3),
        ];
        let order: Vec<u32> = restore_order(&entries).iter().map(|e| e.index).collect();
        assert_eq!(
            order,
            [0x1b, MSR_IA32_TSC, 0xc000_0080, MSR_IA32_TSC_DEADLINE]
        );
        assert!(restore_order(&[]).is_empty());
    }
}
