//! Debug exits travelling from the vCPU threads to the stub.
//!
//! A vCPU thread whose KVM_RUN ends with KVM_EXIT_DEBUG records it here,
//! asks the VM to pause (the main loop kicks the other vCPUs) and parks.
//! The stub waits on the eventfd and reports the first exit of each stop
//! to gdb. At most one exit per vCPU is held: a vCPU that recorded one is
//! parked until the stub resumes the VM, which clears them.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::control::VmControl;

/// One KVM_EXIT_DEBUG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugExit {
    /// The vCPU.
    pub vcpu: u64,
    /// Guest RIP at the exit.
    pub pc: u64,
    /// DR6 (which breakpoint, or a single step).
    pub dr6: u64,
}

/// The exits of the current stop, and the eventfd that wakes the stub.
#[derive(Debug)]
pub struct DebugExits {
    exits: Mutex<Vec<DebugExit>>,
    ready: EventFd,
}

impl DebugExits {
    /// An empty set.
    pub fn new() -> std::io::Result<Self> {
        Ok(DebugExits {
            exits: Mutex::new(Vec::new()),
            ready: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })
    }

    /// The eventfd written for every exit (the stub polls it).
    pub fn ready_fd(&self) -> &EventFd {
        &self.ready
    }

    /// On a vCPU thread: records `exit` (replacing an earlier one of the
    /// same vCPU) and wakes the stub.
    pub fn push(&self, exit: DebugExit) {
        let mut exits = crate::lock(&self.exits);
        exits.retain(|e| e.vcpu != exit.vcpu);
        exits.push(exit);
        drop(exits);
        let _ = self.ready.write(1);
    }

    /// The exits recorded since the last [`Self::clear`], oldest first.
    pub fn pending(&self) -> Vec<DebugExit> {
        crate::lock(&self.exits).clone()
    }

    /// Forgets every exit and drains the eventfd (before a resume).
    pub fn clear(&self) {
        crate::lock(&self.exits).clear();
        let _ = self.ready.read();
    }
}

/// What a vCPU thread holds when a debugger is attached.
#[derive(Clone)]
pub struct VcpuDebugLink {
    exits: Arc<DebugExits>,
    control: Arc<VmControl>,
    wake: Arc<EventFd>,
}

impl VcpuDebugLink {
    pub(crate) fn new(exits: Arc<DebugExits>, control: Arc<VmControl>, wake: Arc<EventFd>) -> Self {
        VcpuDebugLink {
            exits,
            control,
            wake,
        }
    }

    /// A debug exit on `vcpu`: recorded for the stub, and the VM asked to
    /// pause (the main loop, woken here, kicks the other vCPUs). The
    /// caller then parks like any paused vCPU.
    pub fn debug_exit(&self, exit: DebugExit) {
        self.exits.push(exit);
        self.control.want_pause(true);
        let _ = self.wake.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_debug_exits_keep_one_per_vcpu_and_clear() {
        let e = DebugExits::new().unwrap();
        e.push(DebugExit {
            vcpu: 0,
            pc: 1,
            dr6: 0,
        });
        e.push(DebugExit {
            vcpu: 1,
            pc: 2,
            dr6: 0,
        });
        e.push(DebugExit {
            vcpu: 0,
            pc: 3,
            dr6: 0,
        });
        let pcs: Vec<u64> = e.pending().iter().map(|x| x.pc).collect();
        assert_eq!(pcs, [2, 3]);
        assert_eq!(e.ready_fd().read().unwrap(), 3, "one wake-up per exit");
        e.clear();
        assert!(e.pending().is_empty());
    }
}
