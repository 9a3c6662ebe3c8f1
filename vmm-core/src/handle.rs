//! [`VmHandle`]: how anything outside the vCPU threads (a front end's signal
//! handler, a control API, a test) acts on a running VM.

use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::control::{RunState, VmControl};
use crate::error::VmmError;
use crate::host_requests::CTRL_ALT_DEL;
use crate::snapshot::{SnapshotError, SnapshotInfo, SnapshotRequest};

/// How long [`VmHandle::pause`] and [`VmHandle::resume`] wait for the VM.
pub const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap, cloneable handle to one VM, valid before, during and after
/// [`crate::Vm::run`].
///
/// [`VmHandle::stop`] raises the VM's stop flag and wakes the thread running
/// [`crate::Vm::run`] through an eventfd, which at once kicks every vCPU out
/// of KVM_RUN (signal + `immediate_exit`): a stop takes one kick, not a
/// polling interval. The run then ends with [`crate::VmOutcome::Stopped`]
/// unless the guest ended it first.
///
/// ```no_run
/// use vmm_core::{VmBuilder, VmOutcome};
///
/// let vm = VmBuilder::new()
///     .kernel_bytes(vec![0xeb, 0xfe]) // jmp $: spins forever
///     .build()?;
/// let handle = vm.handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_millis(100));
///     handle.stop();
/// });
/// assert_eq!(vm.run()?.outcome, VmOutcome::Stopped);
/// # Ok::<(), vmm_core::VmmError>(())
/// ```
#[derive(Clone)]
pub struct VmHandle {
    control: Arc<VmControl>,
    wake: Arc<EventFd>,
}

impl std::fmt::Debug for VmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmHandle")
            .field("stopping", &self.control.is_stopping())
            .finish()
    }
}

impl VmHandle {
    pub(crate) fn new(control: Arc<VmControl>, wake: Arc<EventFd>) -> Self {
        VmHandle { control, wake }
    }

    /// Asks the VM to stop. Async-signal-safe (two atomic stores and one
    /// `write(2)`), so a front end may call it from a SIGINT handler. A stop
    /// asked for before `run` makes `run` return at once.
    pub fn stop(&self) {
        self.control.request_stop();
        // A full counter (EAGAIN) still wakes the loop: nothing to handle.
        let _ = self.wake.write(1);
    }

    /// The VM's control block (the GDB stub reaches the vCPUs through it).
    pub(crate) fn control(&self) -> &Arc<VmControl> {
        &self.control
    }

    /// Asks for a pause (`true`) or a resume and wakes the main loop,
    /// without waiting: a debugger's resume is followed at once by the
    /// next stop, so waiting to see the VM running could miss it.
    pub(crate) fn request_pause(&self, paused: bool) {
        self.control.want_pause(paused);
        let _ = self.wake.write(1);
    }

    /// Whether the VM is stopping or stopped, for whatever reason.
    pub fn is_stopping(&self) -> bool {
        self.control.is_stopping()
    }

    /// Pauses the VM and returns once it is paused: every vCPU out of
    /// KVM_RUN and parked, the device thread taking no requests, the
    /// guest's KVM clock saved (restored by [`Self::resume`], so the guest
    /// sees no jump). Pausing a paused VM does nothing. Blocks for at most
    /// [`STATE_CHANGE_TIMEOUT`]; a VM that has not started running yet
    /// pauses as soon as it does.
    ///
    /// Not async-signal-safe (it waits on a condition variable).
    pub fn pause(&self) -> Result<(), VmmError> {
        self.change_state(true, RunState::Paused, "pause")
    }

    /// Resumes a paused VM where it stopped and returns once its vCPUs
    /// run again. Resuming a running VM does nothing.
    pub fn resume(&self) -> Result<(), VmmError> {
        self.change_state(false, RunState::Running, "resume")
    }

    /// Whether the VM is paused.
    pub fn is_paused(&self) -> bool {
        self.control.run_state() == RunState::Paused
    }

    /// Whether the guest is in ACPI S3 (suspended to RAM, every vCPU
    /// stopped until a wake event). [`Self::resume`] does not wake it.
    pub fn is_suspended(&self) -> bool {
        self.control.run_state() == RunState::Suspended
    }

    /// Takes a snapshot of the paused VM: its state to
    /// `request.snapshot_path`, guest RAM to `request.mem_file_path` (see
    /// [`crate::snapshot`]). The thread running the VM does the work while
    /// every vCPU is parked; this waits for it. The VM stays paused.
    ///
    /// Errors: [`SnapshotError::NotPaused`] unless [`Self::pause`]
    /// returned first; [`SnapshotError::Busy`] while another snapshot is
    /// being taken; whatever taking it hit. A VM that has stopped gives
    /// [`VmmError::NotRunning`]. A restored VM is paused before it runs; a
    /// snapshot asked of it then is taken once [`crate::Vm::run`] starts.
    pub fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotInfo, VmmError> {
        if self.control.is_stopping() {
            return Err(VmmError::NotRunning);
        }
        if !self.is_paused() {
            return Err(SnapshotError::NotPaused.into());
        }
        self.control.snapshot.submit(request)?;
        let _ = self.wake.write(1);
        let control = self.control.clone();
        match self.control.snapshot.wait(move || control.is_stopping()) {
            Ok(info) => Ok(info),
            Err(SnapshotError::Stopped) => Err(VmmError::NotRunning),
            Err(e) => Err(e.into()),
        }
    }

    fn change_state(
        &self,
        pause: bool,
        want: RunState,
        what: &'static str,
    ) -> Result<(), VmmError> {
        if self.control.is_stopping() {
            return Err(VmmError::NotRunning);
        }
        self.control.want_pause(pause);
        let _ = self.wake.write(1);
        if self.control.wait_run_state(want, STATE_CHANGE_TIMEOUT) {
            return Ok(());
        }
        if self.control.is_stopping() {
            return Err(VmmError::NotRunning);
        }
        if pause {
            // Give up cleanly: vCPUs already parked run on.
            self.control.want_pause(false);
            let _ = self.wake.write(1);
        }
        Err(VmmError::StateChangeTimeout {
            what,
            after: STATE_CHANGE_TIMEOUT,
        })
    }

    /// Presses Ctrl+Alt+Del on the guest's PS/2 keyboard: the scancodes go
    /// into the i8042's keyboard buffer (IRQ 1 is raised when the first
    /// reaches the output buffer), as Firecracker's `SendCtrlAltDel` does.
    /// A guest with an AT keyboard driver (Linux: `ctrl_alt_del` ->
    /// reboot, or what its init maps it to) acts on it.
    pub fn send_ctrl_alt_del(&self) -> Result<(), VmmError> {
        let keyboard = self.control.host.keyboard().ok_or(VmmError::NoKeyboard)?;
        if keyboard.key_press(&CTRL_ALT_DEL) {
            Ok(())
        } else {
            Err(VmmError::KeyboardBusy)
        }
    }

    /// Asks the run loop to write a metrics report to the VM's metrics
    /// sink now (nothing is written without one) and waits until it has,
    /// at most `timeout`. Returns false if the loop did not get to it in
    /// time (the VM is not running yet, or is ending: the final report is
    /// written at the end anyway).
    pub fn flush_metrics(&self, timeout: Duration) -> bool {
        let ticket = self.control.host.ask_flush();
        let _ = self.wake.write(1);
        self.control.host.wait_flushed(ticket, timeout)
    }
}
