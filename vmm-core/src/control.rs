//! Shared run state of one VM: whether it is stopping, why, how many exits
//! it has taken, and whether it is paused. Every vCPU thread, every device
//! that can end the VM, the watchdog and [`crate::VmHandle`] talk through
//! this one object.
//!
//! Pausing: a handle asks ([`VmControl::want_pause`]) and waits
//! ([`VmControl::wait_run_state`]); the main loop kicks every vCPU out of
//! KVM_RUN, each vCPU thread parks ([`VmControl::park`]) until the pause is
//! withdrawn or the VM stops, and once all are parked the main loop saves
//! the clock and publishes [`RunState::Paused`].
//!
//! ACPI S3 uses the same parking: the guest's PM1_CNT write
//! ([`VmEvent::Suspend`], on the vCPU thread that made it) asks for a
//! suspension, the vCPU stops before its next instruction, the main loop
//! parks the others and publishes [`RunState::Suspended`] (the clock is
//! not saved: time passes in S3). A wake event ([`VmEvent::Wake`]) makes
//! the main loop publish a [`WakeReset`] and then [`RunState::Running`];
//! each vCPU thread leaving its park loads that reset before running on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use vmm_cpu::snapshot::VcpuState;
use vmm_cpu::{Vcpu, WakeEntry};
use vmm_devices::{VmEvent, VmEventSink};
use vmm_sys_util::eventfd::EventFd;

use crate::outcome::VmOutcome;
use crate::snapshot::slot::SnapshotSlot;
use crate::snapshot::SnapshotError;

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
    /// Fast check for the vCPU loop (a pause or a suspension is wanted);
    /// the truth is in `pause`.
    pause_wanted: AtomicBool,
    pause: Mutex<PauseState>,
    pause_changed: Condvar,
    /// A snapshot request on its way to the main loop.
    pub(crate) snapshot: SnapshotSlot,
    /// Reboots so far (the same control serves every boot of a VM run
    /// with [`crate::reboot::run_rebooting`]).
    reboots: AtomicU64,
    /// Wakes the main loop (the VM's [`crate::VmHandle`] eventfd), for
    /// events raised on vCPU threads that the main loop must act on.
    main_loop: OnceLock<Arc<EventFd>>,
}

/// The state every vCPU loads when the VM wakes from S3, published by the
/// main loop before it releases them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeReset {
    /// Counts wakes: a vCPU thread loads a reset once per generation.
    pub generation: u64,
    /// Where the boot processor resumes; the others wait for SIPI.
    pub entry: WakeEntry,
}

/// Whether a VM's vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunState {
    /// Running (or not started yet).
    #[default]
    Running,
    /// Every vCPU is parked outside KVM_RUN and the devices take no
    /// requests.
    Paused,
    /// The guest is in ACPI S3: every vCPU is parked and the devices take
    /// no requests until a wake event.
    Suspended,
}

#[derive(Debug, Default)]
struct PauseState {
    wanted: bool,
    state: RunState,
    parked: usize,
    /// The guest asked for S3 and has not been woken yet.
    suspend: bool,
    /// A wake event arrived during the suspension.
    wake: bool,
    /// The last wake's reset.
    reset: Option<WakeReset>,
    /// Generation of the latest request for the parked vCPUs' state.
    save_gen: u64,
    /// Answers to request `save_gen`: (vCPU index, state or error).
    saved: Vec<(u64, Result<VcpuState, SnapshotError>)>,
    /// Work waiting for a parked vCPU thread ([`VmControl::post_job`]).
    jobs: Vec<PendingJob>,
    /// vCPUs that stay parked while the others run ([`VmControl::hold`]).
    held: Vec<u64>,
}

impl PauseState {
    fn wants_park(&self) -> bool {
        self.wanted || self.suspend
    }
}

/// What a parked vCPU thread does for others, on that thread (the only
/// one that may touch the vCPU's fd): save its state when the main loop
/// asks (a snapshot), run the jobs a debugger posts.
pub trait ParkedVcpu {
    /// Saves the vCPU's state.
    fn save(&mut self) -> Result<VcpuState, SnapshotError>;
    /// Runs `job` with the vCPU.
    fn run_job(&mut self, job: VcpuJob);
}

/// A vCPU and how to save it: the [`ParkedVcpu`] of a vCPU thread.
pub struct Parked<'a, F: FnMut(&mut Vcpu) -> Result<VcpuState, SnapshotError>> {
    /// The thread's vCPU.
    pub vcpu: &'a mut Vcpu,
    /// Saves it.
    pub save: F,
}

impl<F: FnMut(&mut Vcpu) -> Result<VcpuState, SnapshotError>> ParkedVcpu for Parked<'_, F> {
    fn save(&mut self) -> Result<VcpuState, SnapshotError> {
        (self.save)(self.vcpu)
    }

    fn run_job(&mut self, job: VcpuJob) {
        job(self.vcpu)
    }
}

/// Work for one parked vCPU, run on that vCPU's own thread: how a
/// debugger reads and changes a stopped vCPU. The job carries its own way
/// of answering (a channel).
pub type VcpuJob = Box<dyn FnOnce(&mut Vcpu) + Send>;

/// A job and the vCPU it is for.
struct PendingJob {
    vcpu: u64,
    job: VcpuJob,
}

impl std::fmt::Debug for PendingJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingJob")
            .field("vcpu", &self.vcpu)
            .finish()
    }
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

    /// Reboots so far.
    pub fn reboots(&self) -> u64 {
        self.reboots.load(Ordering::Relaxed)
    }

    /// Readies this control for the next boot after a guest reset: no
    /// outcome, not stopping (unless a stop was asked for meanwhile: the
    /// next boot then ends at once), running, no pause pending; the exit
    /// budget and its count carry on (the limits are the whole run's), and
    /// the reboot is counted.
    pub(crate) fn reset_for_reboot(&self) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = None;
        {
            let mut p = self.pause_state();
            p.wanted = false;
            p.state = RunState::Running;
            p.saved.clear();
            self.pause_wanted.store(false, Ordering::SeqCst);
            self.pause_changed.notify_all();
        }
        self.reboots.fetch_add(1, Ordering::Relaxed);
        // Last, so that a stop asked for at any point above survives.
        self.stopping
            .store(self.requested.load(Ordering::SeqCst), Ordering::Release);
    }
}

impl VmControl {
    fn pause_state(&self) -> MutexGuard<'_, PauseState> {
        self.pause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for (`true`) or withdraws (`false`) a pause; the main loop,
    /// woken by the caller, carries it out.
    pub fn want_pause(&self, wanted: bool) {
        let mut p = self.pause_state();
        p.wanted = wanted;
        self.pause_wanted.store(p.wants_park(), Ordering::SeqCst);
        self.pause_changed.notify_all();
    }

    /// Whether a pause or a suspension is wanted (checked by the vCPU loop
    /// before every KVM_RUN).
    pub fn pause_wanted(&self) -> bool {
        self.pause_wanted.load(Ordering::SeqCst)
    }

    /// Connects the main loop's eventfd, written when a device event needs
    /// the main loop (S3 entry and wake).
    pub(crate) fn set_main_loop_waker(&self, fd: Arc<EventFd>) {
        let _ = self.main_loop.set(fd);
    }

    fn wake_main_loop(&self) {
        if let Some(fd) = self.main_loop.get() {
            let _ = fd.write(1);
        }
    }

    /// The guest entered S3: every vCPU is to stop (the caller's before
    /// its next instruction: it checks [`Self::pause_wanted`] before
    /// re-entering the guest).
    pub fn request_suspend(&self) {
        let mut p = self.pause_state();
        p.suspend = true;
        p.wake = false;
        self.pause_wanted.store(true, Ordering::SeqCst);
        self.pause_changed.notify_all();
        drop(p);
        self.wake_main_loop();
    }

    /// A wake event: the suspended VM resumes (ignored unless suspended or
    /// suspending).
    pub fn request_wake(&self) {
        let mut p = self.pause_state();
        if p.suspend {
            p.wake = true;
        }
        drop(p);
        self.wake_main_loop();
    }

    /// Whether the guest asked for S3 and is not awake again.
    pub fn suspend_wanted(&self) -> bool {
        self.pause_state().suspend
    }

    /// Whether a wake event arrived for the current suspension.
    pub fn wake_wanted(&self) -> bool {
        let p = self.pause_state();
        p.suspend && p.wake
    }

    /// Ends the suspension (the main loop, with every vCPU parked): the
    /// vCPUs load `entry` when they leave their park, which publishing
    /// [`RunState::Running`] then allows.
    pub(crate) fn publish_wake(&self, entry: WakeEntry) -> WakeReset {
        let mut p = self.pause_state();
        let generation = p.reset.map_or(1, |r| r.generation + 1);
        let reset = WakeReset { generation, entry };
        p.reset = Some(reset);
        p.suspend = false;
        p.wake = false;
        self.pause_wanted.store(p.wants_park(), Ordering::SeqCst);
        reset
    }

    /// The last wake's reset, if it is newer than generation `seen`.
    pub fn wake_reset_since(&self, seen: u64) -> Option<WakeReset> {
        self.pause_state().reset.filter(|r| r.generation > seen)
    }

    /// On a vCPU thread that left KVM_RUN for a pause: waits, counted as
    /// parked, until the pause is withdrawn or the VM stops. Meanwhile it
    /// answers each request of [`Self::collect_vcpu_states`] and runs each
    /// job posted for it ([`Self::post_job`]) through `parked`, on this
    /// thread (which owns the vCPU), outside the lock.
    pub fn park(&self, index: u64, parked: &mut dyn ParkedVcpu) {
        let mut p = self.pause_state();
        p.parked += 1;
        // Requests made before this thread parked are not its to answer.
        let mut served = p.save_gen;
        self.pause_changed.notify_all();
        // Until the main loop has restored the clock (or, after S3,
        // published the wake reset) and published Running, not merely until
        // the pause is withdrawn; a vCPU a debugger holds stays.
        while (p.wants_park() || p.state != RunState::Running || p.held.contains(&index))
            && !self.is_stopping()
        {
            if let Some(at) = p.jobs.iter().position(|j| j.vcpu == index) {
                let job = p.jobs.remove(at).job;
                drop(p);
                parked.run_job(job);
                p = self.pause_state();
                continue;
            }
            if p.save_gen != served {
                served = p.save_gen;
                drop(p);
                let state = parked.save();
                p = self.pause_state();
                if p.save_gen == served {
                    p.saved.push((index, state));
                    self.pause_changed.notify_all();
                }
                continue;
            }
            // A bounded wait: a stop raised from a signal handler cannot
            // notify, and the main loop's notification follows it anyway.
            p = self
                .pause_changed
                .wait_timeout(p, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.parked -= 1;
        // Jobs nobody will run now: dropping them closes their answer
        // channels, so whoever waits learns at once.
        p.jobs.retain(|j| j.vcpu != index);
        self.pause_changed.notify_all();
    }

    /// Keeps the vCPUs in `held` parked when the VM resumes, the others
    /// running (a debugger's scheduler locking); an empty list releases
    /// them all. Takes effect at the next resume.
    pub fn hold(&self, held: Vec<u64>) {
        let mut p = self.pause_state();
        p.held = held;
        self.pause_changed.notify_all();
    }

    /// Hands `job` to vCPU `index`'s thread, which runs it while parked
    /// (now, or as soon as it parks). Jobs for one vCPU run in order. A job
    /// posted while the VM stops is dropped unrun.
    pub fn post_job(&self, index: u64, job: VcpuJob) {
        let mut p = self.pause_state();
        if self.is_stopping() {
            return;
        }
        p.jobs.push(PendingJob { vcpu: index, job });
        self.pause_changed.notify_all();
    }

    /// On the main loop of a paused VM: asks each of the `n` parked vCPU
    /// threads for its state and waits up to `timeout` for all of them.
    /// Returns the states in vCPU index order, or the first error.
    pub fn collect_vcpu_states(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<VcpuState>, SnapshotError> {
        let mut p = self.pause_state();
        p.save_gen = p.save_gen.wrapping_add(1);
        p.saved.clear();
        self.pause_changed.notify_all();
        let (mut p, _) = self
            .pause_changed
            .wait_timeout_while(p, timeout, |p| p.saved.len() < n && !self.is_stopping())
            .unwrap_or_else(|e| e.into_inner());
        let mut saved = std::mem::take(&mut p.saved);
        drop(p);
        if saved.len() < n {
            if self.is_stopping() {
                return Err(SnapshotError::Stopped);
            }
            return Err(SnapshotError::VcpuTimeout {
                saved: saved.len(),
                expected: n,
                waited: timeout,
            });
        }
        saved.sort_by_key(|(index, _)| *index);
        saved.into_iter().map(|(_, state)| state).collect()
    }

    /// How many vCPU threads are parked.
    pub fn parked(&self) -> usize {
        self.pause_state().parked
    }

    /// Waits up to `timeout` for `parked() >= n`; returns whether it got
    /// there.
    pub fn wait_parked(&self, n: usize, timeout: Duration) -> bool {
        let p = self.pause_state();
        let (p, _) = self
            .pause_changed
            .wait_timeout_while(p, timeout, |p| p.parked < n && !self.is_stopping())
            .unwrap_or_else(|e| e.into_inner());
        p.parked >= n
    }

    /// Publishes the run state (the main loop, once it is true).
    pub fn set_run_state(&self, state: RunState) {
        self.pause_state().state = state;
        self.pause_changed.notify_all();
    }

    /// The published run state.
    pub fn run_state(&self) -> RunState {
        self.pause_state().state
    }

    /// Waits until the published state is `want` (true), the VM stops or
    /// `timeout` passes (false).
    pub fn wait_run_state(&self, want: RunState, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut p = self.pause_state();
        while p.state != want && !self.is_stopping() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .pause_changed
                .wait_timeout(p, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.state == want
    }

    /// Wakes everything waiting on the pause state (after a stop).
    pub fn wake_waiters(&self) {
        let _p = self.pause_state();
        self.pause_changed.notify_all();
    }
}

impl VmEventSink for VmControl {
    fn vm_event(&self, event: VmEvent) {
        match event {
            VmEvent::DebugExit(value) => self.stop(VmOutcome::DebugExit { value }),
            VmEvent::Reset => self.stop(VmOutcome::Reset),
            VmEvent::PowerOff => self.stop(VmOutcome::PowerOff),
            VmEvent::Suspend => self.request_suspend(),
            VmEvent::Wake => self.request_wake(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked "vCPU" with nothing to save and no jobs to run.
    struct NoVcpu;

    impl ParkedVcpu for NoVcpu {
        fn save(&mut self) -> Result<VcpuState, SnapshotError> {
            Err(SnapshotError::NotPaused)
        }

        fn run_job(&mut self, _job: VcpuJob) {}
    }

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
    fn test_reset_for_reboot_clears_the_outcome_but_keeps_budget_and_stop_requests() {
        let c = VmControl::new(Some(10));
        c.count_exit();
        c.vm_event(VmEvent::Reset);
        assert!(c.is_stopping());
        c.reset_for_reboot();
        assert!(!c.is_stopping());
        assert_eq!(c.outcome(), None);
        assert_eq!((c.exits(), c.reboots()), (1, 1));
        assert_eq!(c.run_state(), RunState::Running);
        // A stop asked for around the reboot is not lost.
        c.vm_event(VmEvent::Reset);
        c.request_stop();
        c.reset_for_reboot();
        assert!(c.is_stopping());
        assert_eq!(c.outcome(), Some(VmOutcome::Stopped));
        assert_eq!(c.reboots(), 2);
    }

    #[test]
    fn test_suspend_parks_until_wake_published() {
        let c = Arc::new(VmControl::new(None));
        let fd = Arc::new(EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap());
        c.set_main_loop_waker(fd.clone());
        // A wake before any suspension means nothing.
        c.vm_event(VmEvent::Wake);
        assert!(!c.wake_wanted());
        c.vm_event(VmEvent::Suspend);
        assert!(c.pause_wanted() && c.suspend_wanted());
        assert!(fd.read().unwrap() >= 1, "the main loop was woken");
        // A user's resume does not end a suspension.
        c.want_pause(false);
        assert!(c.pause_wanted());
        let parked = {
            let c = c.clone();
            std::thread::spawn(move || {
                // No snapshot is asked for here: the save is never called.
                c.park(0, &mut NoVcpu);
                c.wake_reset_since(0)
            })
        };
        assert!(c.wait_parked(1, Duration::from_secs(5)));
        c.set_run_state(RunState::Suspended);
        c.vm_event(VmEvent::Wake);
        assert!(c.wake_wanted());
        let entry = WakeEntry::RealMode { vector: 0x1000 };
        let reset = c.publish_wake(entry);
        assert_eq!(reset.generation, 1);
        assert!(!c.pause_wanted());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!parked.is_finished(), "held until Running is published");
        c.set_run_state(RunState::Running);
        assert_eq!(parked.join().unwrap(), Some(reset));
        assert_eq!(c.wake_reset_since(1), None);
        assert_eq!(c.publish_wake(entry).generation, 2);
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
