//! Shared run state of one VM: whether it is stopping, why, and how many
//! exits it has taken. Every vCPU thread, every device that can end the VM
//! and the watchdog talk through this one object.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use vmm_devices::{VmEvent, VmEventSink};

use crate::outcome::VmOutcome;

/// Stop flag, first outcome and exit budget of a VM.
#[derive(Debug, Default)]
pub struct VmControl {
    stopping: AtomicBool,
    /// A stop asked for through [`crate::VmHandle`]; recorded as
    /// [`VmOutcome::Stopped`] unless something else ended the VM first.
    requested: AtomicBool,
    outcome: Mutex<Option<VmOutcome>>,
    exits: AtomicU64,
    max_exits: Option<u64>,
    /// Key presses and metrics flushes asked for through the VM handle.
    pub(crate) host: crate::host_requests::HostRequests,
}

impl VmControl {
    /// A control block that stops the VM after `max_exits` exits, if set.
    pub fn new(max_exits: Option<u64>) -> Self {
        VmControl {
            max_exits,
            ..Default::default()
        }
    }

    /// Records `outcome` unless one was recorded already (the first cause of
    /// a stop is the one reported), then raises the stop flag. The caller
    /// kicks vCPU threads that may be inside KVM_RUN.
    pub fn stop(&self, outcome: VmOutcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
        }
        // Release pairs with the Acquire in `is_stopping`: a vCPU that sees
        // the flag also sees the recorded outcome.
        self.stopping.store(true, Ordering::Release);
    }

    /// Asks the VM to stop, recording nothing yet: only atomics, so it may
    /// be called from a signal handler. The outcome becomes
    /// [`VmOutcome::Stopped`] unless another one is recorded first.
    pub fn request_stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether [`Self::request_stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Raises the stop flag without recording an outcome (a vCPU failed and
    /// the error travels separately, or an outcome is already recorded).
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The recorded outcome; [`VmOutcome::Stopped`] if none was recorded
    /// but a stop was requested.
    pub fn outcome(&self) -> Option<VmOutcome> {
        let recorded = self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        recorded.or_else(|| self.stop_requested().then_some(VmOutcome::Stopped))
    }

    /// Counts one guest exit against the budget; returns `true` when this
    /// exit used up the budget (and stops the VM).
    pub fn count_exit(&self) -> bool {
        let n = self.exits.fetch_add(1, Ordering::Relaxed) + 1;
        match self.max_exits {
            Some(limit) if n >= limit => {
                self.stop(VmOutcome::MaxExits { limit });
                true
            }
            _ => false,
        }
    }

    /// Exits counted so far.
    pub fn exits(&self) -> u64 {
        self.exits.load(Ordering::Relaxed)
    }
}

impl VmEventSink for VmControl {
    fn vm_event(&self, event: VmEvent) {
        match event {
            VmEvent::DebugExit(value) => self.stop(VmOutcome::DebugExit { value }),
            VmEvent::Reset => self.stop(VmOutcome::Reset),
            VmEvent::PowerOff => self.stop(VmOutcome::PowerOff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_first_outcome_wins() {
        let c = VmControl::new(None);
        assert!(!c.is_stopping());
        c.vm_event(VmEvent::DebugExit(3));
        c.stop(VmOutcome::Halted { vcpu: 0 });
        assert!(c.is_stopping());
        assert_eq!(c.outcome(), Some(VmOutcome::DebugExit { value: 3 }));
    }

    #[test]
    fn test_requested_stop_is_stopped_unless_something_came_first() {
        let c = VmControl::new(None);
        c.request_stop();
        assert!(c.is_stopping());
        assert_eq!(c.outcome(), Some(VmOutcome::Stopped));
        let c = VmControl::new(None);
        c.vm_event(VmEvent::PowerOff);
        c.request_stop();
        assert_eq!(c.outcome(), Some(VmOutcome::PowerOff));
    }

    #[test]
    fn test_exit_budget() {
        let c = VmControl::new(Some(3));
        assert!(!c.count_exit());
        assert!(!c.count_exit());
        assert!(c.count_exit());
        assert_eq!(c.outcome(), Some(VmOutcome::MaxExits { limit: 3 }));
    }
}
