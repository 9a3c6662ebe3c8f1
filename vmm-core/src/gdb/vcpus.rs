//! The stub's hold on the vCPUs: pausing and resuming the VM through the
//! main loop (the same pause every [`crate::VmHandle`] uses), and running
//! work on a parked vCPU's own thread ([`VmControl::post_job`]), because
//! only that thread may touch the vCPU's fd.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_cpu::Vcpu;

use super::GdbError;
use crate::control::{RunState, VmControl};
use crate::dispatch::ExitDispatcher;
use crate::handle::{VmHandle, STATE_CHANGE_TIMEOUT};

/// How long one job may take: a parked thread answers in microseconds;
/// one that does not within this is stuck.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The VM's vCPUs as the stub reaches them.
pub(crate) struct Vcpus {
    control: Arc<VmControl>,
    handle: VmHandle,
    dispatcher: Arc<ExitDispatcher>,
    count: usize,
}

impl Vcpus {
    pub fn new(handle: VmHandle, dispatcher: Arc<ExitDispatcher>, count: usize) -> Self {
        Vcpus {
            control: handle.control().clone(),
            handle,
            dispatcher,
            count,
        }
    }

    /// Number of vCPUs.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the VM is stopping or has stopped.
    pub fn vm_ended(&self) -> bool {
        self.control.is_stopping()
    }

    /// How the VM ended, once it has.
    pub fn outcome(&self) -> Option<crate::outcome::VmOutcome> {
        self.control.outcome()
    }

    /// The handle (to stop the VM when gdb kills it).
    pub fn handle(&self) -> &VmHandle {
        &self.handle
    }

    /// Runs `f` on parked vCPU `vcpu`'s thread with the vCPU and the exit
    /// handler, and returns its result.
    pub fn call<R, F>(&self, vcpu: u64, f: F) -> Result<R, GdbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Vcpu, &ExitDispatcher) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let dispatcher = self.dispatcher.clone();
        self.control.post_job(
            vcpu,
            Box::new(move |v: &mut Vcpu| {
                let _ = tx.send(f(v, &dispatcher));
            }),
        );
        let start = Instant::now();
        loop {
            match rx.recv_timeout(STOP_CHECK) {
                Ok(r) => return Ok(r),
                // The job was dropped unrun: the VM is stopping.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(GdbError::VmEnded),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.control.is_stopping() {
                        return Err(GdbError::VmEnded);
                    }
                    if start.elapsed() >= JOB_TIMEOUT {
                        return Err(GdbError::VcpuTimeout {
                            vcpu,
                            waited: JOB_TIMEOUT,
                        });
                    }
                }
            }
        }
    }

    /// Asks the main loop to pause the VM (it kicks every vCPU out of
    /// KVM_RUN) and waits until it is paused: every vCPU parked (a guest in
    /// ACPI S3 has every vCPU parked already).
    pub fn pause(&self) -> Result<(), GdbError> {
        self.handle.request_pause(true);
        let start = Instant::now();
        while !self.control.wait_run_state(RunState::Paused, STOP_CHECK) && !self.paused() {
            if self.control.is_stopping() {
                return Err(GdbError::VmEnded);
            }
            if start.elapsed() >= STATE_CHANGE_TIMEOUT {
                return Err(GdbError::PauseTimeout(STATE_CHANGE_TIMEOUT));
            }
        }
        if self.control.is_stopping() {
            return Err(GdbError::VmEnded);
        }
        Ok(())
    }

    /// Whether the VM is paused or suspended (every vCPU parked).
    pub fn paused(&self) -> bool {
        self.control.run_state() != RunState::Running
    }

    /// Lets the VM run on, but the vCPUs in `held`; returns at once (the
    /// next stop is a debug exit, an interrupt, or the VM's end).
    pub fn resume(&self, held: Vec<u64>) {
        self.control.hold(held);
        self.handle.request_pause(false);
    }
}
