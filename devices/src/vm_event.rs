//! Requests from devices to the VMM that end or change the VM's life.

/// Something a device asks the VMM to do to the whole VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEvent {
    /// QEMU isa-debug-exit: the guest wrote `value`; the VMM exits with
    /// status `(value << 1) | 1`.
    DebugExit(u32),
    /// The guest asked for a CPU reset (i8042 command 0xFE, ...). This VMM
    /// ends the VM instead of rebooting it.
    Reset,
    /// The guest powered off (ACPI S5 through PM1a_CNT, ...).
    PowerOff,
    /// The guest entered ACPI S3 (suspend to RAM): every vCPU stops where
    /// it is, RAM is kept, and the VM waits for [`VmEvent::Wake`].
    Suspend,
    /// A wake event arrived while the VM was in S3 (the RTC alarm with
    /// RTC_EN, the power button): the platform resumes, the boot processor
    /// at the firmware waking vector.
    Wake,
}

/// Receives [`VmEvent`]s. vmm-core implements it to stop the vCPUs; tests
/// implement it to record events.
pub trait VmEventSink: Send + Sync {
    /// Handles one event. Called on a vCPU thread, in the middle of an exit.
    fn vm_event(&self, event: VmEvent);
}

/// Records events, for tests and for VMMs that poll.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: std::sync::Mutex<Vec<VmEvent>>,
}

impl RecordingSink {
    /// Events received so far.
    pub fn events(&self) -> Vec<VmEvent> {
        crate::lock(&self.events).clone()
    }
}

impl VmEventSink for RecordingSink {
    fn vm_event(&self, event: VmEvent) {
        crate::lock(&self.events).push(event);
    }
}
