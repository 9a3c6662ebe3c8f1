//! A built VM and its run: one thread per vCPU, a watchdog on the calling
//! thread, and a clean stop (every vCPU kicked and joined) however it ends.

use std::os::unix::io::RawFd;
use std::sync::mpsc::{self, Sender, TryRecvError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Kvm, VmFd};
use seccompiler::BpfProgram;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_cpu::kick::{install_kick_handler, kick_signal};
use vmm_cpu::metrics::{LatencySnapshot, VcpuMetrics};
use vmm_cpu::{EmulationFallback, ExitKind, Vcpu, VcpuError, VcpuStats, VcpuStop, WakeStateError};
use vmm_devices::legacy::cmos::CmosState;
use vmm_devices::legacy::{CmosMemorySizes, PostCode, PostCodePort};
use vmm_devices::pc::{BuiltDevices, DeviceSet, DeviceSetOptions};
use vmm_devices::timer::TimedDeviceLink;
use vmm_devices::{Console, IoBus};
use vmm_memory::GuestRam;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};
use vmm_sys_util::signal::Killable;

use crate::control::RunState;
use crate::control::{Parked, VmControl};
use crate::dispatch::ExitDispatcher;
use crate::error::VmmError;
use crate::explain::{final_regs_line, group_thousands, say, Explainer};
use crate::gdb::{
    AttachedGdb, DebugExits, GdbError, GdbServer, HostDebug, StubParts, VcpuDebugLink,
};
use crate::handle::VmHandle;
use crate::host_input::HostInput;
use crate::outcome::VmOutcome;
use crate::pause::{PauseEnd, Pauser};
use crate::platform::KvmInterruptLines;
use crate::seccomp::{
    self, confine_current_thread, install_sigsys_handler, SeccompError, ThreadRole,
};
use crate::snapshot::create::{save_vcpu, take_snapshot, SnapshotContext, SnapshotSource};
use crate::snapshot::{SnapshotError, SnapshotInfo, SnapshotRequest};
use crate::startup::{Mark, StartupMarks, StartupPhase};
use crate::stats::VmStats;
use crate::suspend::Suspender;
use crate::timeline::{ExitTimeline, TimelineSnapshot};
use crate::timers::DeviceTimer;
use crate::vcpu_threads::{VcpuJob, VcpuThreads};
use crate::virtio::{
    register_queue_notifies, ConsoleInputLink, DeviceThread, SharedTransport, VirtioSlot, WINDOW,
};
use vm_device::bus::MmioAddress;
use vmm_devices::pc::InterruptLines;
use vmm_devices::state::StateError;
use vmm_devices::virtio::{DirtyPages, MmioTransport, MmioWindow, TransportState, VirtioDevice};

/// Receives periodic statistics while the VM runs (`--metrics-interval`).
pub type MetricsSink = Box<dyn FnMut(&VmStats) + Send>;

/// How often a vCPU that has not stopped yet is kicked again. A kick can be
/// delayed by a few ms while KVM emulates guest code on nested hosts.
const KICK_RETRY: Duration = Duration::from_millis(5);

/// When a guest that has written nothing to its console gets a hint
/// logged (a warning): long enough for any small guest to have spoken.
const QUIET_HINT_AFTER: Duration = Duration::from_secs(5);

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: VmOutcome,
    /// Counters and timings.
    pub stats: VmStats,
    /// POST codes written to port 0x80, oldest first.
    pub post_codes: Vec<PostCode>,
    /// Exits per kind over time, when [`crate::HostOptions::exit_timeline`]
    /// asked for them.
    pub timeline: Option<TimelineSnapshot>,
}

/// How a VM runs, as the host wants it (none of it is the guest's view).
pub(crate) struct RunOptions {
    pub timeout: Option<Duration>,
    pub metrics: Option<(Duration, MetricsSink)>,
    pub seccomp: bool,
    pub trace_io: bool,
    pub print_post_codes: bool,
    pub console_input: Option<RawFd>,
    pub started_at: Option<Instant>,
    /// The whole run's deadline, for a later boot of a rebooting VM (its
    /// timeout counts from the first boot); else `timeout` from `run`.
    pub deadline: Option<Instant>,
    pub explain: Option<Arc<Explainer>>,
    pub timeline: Option<Arc<ExitTimeline>>,
    /// Start-up phase marks, for the report.
    pub startup: StartupMarks,
    /// The main thread's seccomp filter, if compiled ahead (else `run`
    /// compiles it).
    pub main_filter: Option<BpfProgram>,
}

/// What [`Vm::create`] assembled, in the order it must be dropped.
pub(crate) struct VmParts {
    pub vcpus: Vec<Vcpu>,
    /// The vCPU threads, if started already (else `run` starts them).
    pub threads: Option<VcpuThreads<VcpuResult>>,
    pub vm_fd: VmFd,
    pub kvm: Arc<Kvm>,
    pub ram: GuestRam,
    pub irqchip: bool,
    pub control: Arc<VmControl>,
    pub options: RunOptions,
    pub virtio_slots: Vec<VirtioSlot>,
    /// Where the firmware tables put the FACS (PC platform).
    pub facs: Option<GuestAddress>,
    pub fallback: Option<Arc<EmulationFallback>>,
    pub snapshot: SnapshotContext,
    /// Track the pages virtio devices write (diff snapshots).
    pub track_dirty_pages: bool,
    /// The wake-up eventfd of the VM's handles, for a later boot of a
    /// rebooting VM (else a new one).
    pub wake: Option<Arc<EventFd>>,
}

/// What one boot hands the next (see [`crate::reboot`]): the handles' state
/// and what the host set up once for the whole run.
pub(crate) struct Leftovers {
    pub control: Arc<VmControl>,
    pub wake: Arc<EventFd>,
    pub metrics: Option<(Duration, MetricsSink)>,
    pub deadline: Option<Instant>,
    pub cmos: Option<CmosState>,
}

/// A created VM: guest RAM holding the image, the KVM VM with its vCPUs in
/// their start state and, on the PC platform, the in-kernel irqchip and
/// the firmware tables. Devices are attached with
/// [`Vm::attach_devices`] (built from [`vmm_devices::pc`] with
/// [`Vm::device_options`] and [`Vm::interrupt_lines`]); then
/// [`Vm::run`]. Dropping it without running releases everything.
pub struct Vm {
    // Field order is drop order: vCPU fds, then the VM fd, then the RAM that
    // KVM maps (see the safety contract of `register_memory_slots`).
    vcpus: Vec<Vcpu>,
    /// Waiting for their vCPUs (see `crate::vcpu_threads`); dropped (and
    /// joined) before the vCPU fds they never got.
    threads: Option<VcpuThreads<VcpuResult>>,
    vm_fd: VmFd,
    _kvm: Arc<Kvm>,
    ram: GuestRam,
    irqchip: bool,
    bus: IoBus,
    post: Option<Arc<PostCodePort>>,
    host_input: Option<HostInput>,
    /// Host input goes to a virtio console, not to the UART.
    input_to_virtio: bool,
    /// The devices' console, watched for a guest that says nothing.
    console: Option<Console>,
    control: Arc<VmControl>,
    wake: Arc<EventFd>,
    options: RunOptions,
    /// The virtio slots the configuration asked for, and the transports
    /// attached to them so far (in slot order).
    virtio_slots: Vec<VirtioSlot>,
    virtio: Vec<(VirtioSlot, SharedTransport)>,
    /// Devices the main loop services on timers (RTC, PM timer).
    timed: Vec<TimedDeviceLink>,
    /// The FACS, for the waking vector at an S3 wake.
    facs: Option<GuestAddress>,
    /// The emulation fallback the vCPUs share, for its counters.
    fallback: Option<Arc<EmulationFallback>>,
    /// What snapshots need.
    snap: SnapshotContext,
    /// The GDB stub, when one is attached ([`Vm::attach_gdb`]).
    gdb: Option<AttachedGdb>,
    /// A debugger is attached: the guest waits for it, so its silence
    /// means nothing.
    debugged: bool,
    /// The CMOS of the boot before (a reboot), for the CMOS attached next.
    pub(crate) cmos_kept: Option<CmosState>,
}

/// Sends a vCPU's index when its thread leaves its run loop (even by
/// panic), and wakes the main thread's event loop.
struct DoneSignal(Sender<u64>, u64, Arc<EventFd>);

impl Drop for DoneSignal {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
        let _ = self.2.write(1);
    }
}

/// Drains the "a vCPU is done" eventfd so the event loop returns.
struct Wakeup(Arc<EventFd>);

impl MutEventSubscriber for Wakeup {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.0.read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&*self.0, EventSet::IN)) {
            log::warn!("event loop: watching vCPU completion failed: {e:?}");
        }
    }
}

type EventLoop = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

/// Why a vCPU thread failed.
pub(crate) enum VcpuFailure {
    Run(VcpuError),
    Seccomp(SeccompError),
    Wake(WakeStateError),
}

/// What a vCPU thread ends with: its index, how its loop ended, its stats.
pub(crate) type VcpuResult = (u64, Result<VcpuStop, VcpuFailure>, VcpuStats);

/// What the main loop watches while the guest runs.
struct Running<'a> {
    dispatcher: &'a ExitDispatcher,
    started: Instant,
    done: &'a mpsc::Receiver<u64>,
    vcpus: &'a [(u64, Arc<VcpuMetrics>)],
    threads: &'a [JoinHandle<Option<VcpuResult>>],
    devices: Option<&'a DeviceThread>,
    suspender: &'a Suspender,
}

impl Vm {
    pub(crate) fn new(parts: VmParts) -> Result<Self, VmmError> {
        let VmParts {
            vcpus,
            threads,
            vm_fd,
            kvm,
            ram,
            irqchip,
            control,
            options,
            virtio_slots,
            facs,
            fallback,
            mut snapshot,
            track_dirty_pages,
            wake,
        } = parts;
        let wake = match wake {
            Some(w) => w,
            None => Arc::new(EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmmError::EventFd)?),
        };
        // S3 entry and wake come from devices on vCPU threads and need the
        // main loop (the same eventfd for every boot of a rebooting VM).
        control.set_main_loop_waker(wake.clone());
        if track_dirty_pages {
            snapshot.dirty = Some(Arc::new(DirtyPages::new(ram.memory())));
        }
        Ok(Vm {
            vcpus,
            threads,
            vm_fd,
            _kvm: kvm,
            ram,
            irqchip,
            bus: IoBus::new(),
            post: None,
            host_input: None,
            input_to_virtio: false,
            console: None,
            control,
            wake,
            options,
            virtio_slots,
            virtio: Vec::new(),
            timed: Vec::new(),
            facs,
            fallback,
            snap: snapshot,
            gdb: None,
            debugged: false,
            cmos_kept: None,
        })
    }

    /// What this VM is: its configuration without the boot inputs, the
    /// platform resolved (for a restored VM, the snapshot's). A control
    /// API reports a restored VM's machine and devices from it.
    pub fn config(&self) -> &crate::VmConfig {
        &self.snap.config
    }

    /// The virtio slots the VM's configuration asked for, in the order
    /// [`Vm::attach_virtio`] fills them (and the guest was told about).
    pub fn virtio_slots(&self) -> &[VirtioSlot] {
        &self.virtio_slots
    }

    /// Puts `device` in the next configured virtio slot: a virtio-mmio
    /// transport in the slot's window, its queue notifications as KVM
    /// ioeventfds, its interrupt as an irqfd on the slot's GSI. Devices
    /// must be attached in [`Vm::virtio_slots`] order, matching types.
    pub fn attach_virtio(&mut self, device: Box<dyn VirtioDevice>) -> Result<VirtioSlot, VmmError> {
        let got = device.device_type();
        let slot = match self.virtio_slots.get(self.virtio.len()) {
            Some(slot) if slot.kind.device_type() == got => *slot,
            other => {
                return Err(VmmError::VirtioSlot {
                    expected: other.map(|s| s.kind.device_type()),
                    got,
                })
            }
        };
        let line =
            self.interrupt_lines()
                .line(slot.gsi)
                .map_err(|source| VmmError::VirtioInterrupt {
                    gsi: slot.gsi,
                    source,
                })?;
        let mut transport = MmioTransport::new(device, self.ram.memory().clone(), line)?;
        if let Some(dirty) = &self.snap.dirty {
            transport.track_dirty_pages(dirty.clone());
        }
        register_queue_notifies(&self.vm_fd, slot.base, &transport)?;
        say(&self.options.explain, || {
            let name = format!("virtio-{:?}", slot.kind).to_lowercase();
            format!(
                "KVM_IOEVENTFD x{}: {name}'s queue notifications (MMIO {:#x}, one per queue index in the data) signal eventfds without a userspace exit; KVM_IRQFD above is its interrupt",
                transport.queue_events().len(),
                slot.base + u64::from(virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY),
            )
        });
        log::info!(
            "virtio {:?} at {:#x}, GSI {} ({})",
            slot.kind,
            slot.base,
            slot.gsi,
            slot.cmdline_param()
        );
        self.virtio.push((slot, Arc::new(Mutex::new(transport))));
        Ok(slot)
    }

    /// Puts a snapshot's state on the transport of virtio slot `index`
    /// (attached, not yet driven).
    pub(crate) fn restore_virtio_transport(
        &mut self,
        index: usize,
        state: &TransportState,
    ) -> Result<(), StateError> {
        match self.virtio.get(index) {
            Some((_, t)) => crate::lock(t).restore(state),
            None => Err(StateError::Invalid {
                device: "virtio-mmio",
                field: "slot",
                value: index as u64,
                why: "no transport is attached there",
            }),
        }
    }

    /// Makes a restored VM run as soon as [`Vm::run`] starts instead of
    /// starting paused (Firecracker's `resume_vm: true`). The snapshot's
    /// KVM clock is set just before the vCPUs first run, so the guest
    /// sees no time pass. Does nothing on a VM that was not restored.
    pub fn resume_on_start(&mut self) {
        if self.control.run_state() == RunState::Paused {
            self.control.want_pause(false);
            self.control.set_run_state(RunState::Running);
        }
    }

    /// Marks the VM as holding a device a snapshot cannot capture (an
    /// extra device put on the bus by hand): snapshots are refused,
    /// naming it.
    pub fn add_unsnapshottable(&mut self, device: impl Into<String>) {
        self.snap.unsnapshottable.push(device.into());
    }

    /// Sends the host's console input (when [`HostOptions`] has one) to a
    /// virtio console instead of the UART: the guest asked for hvc0 on
    /// stdio, and one reader of stdin can feed only one console.
    ///
    /// [`HostOptions`]: crate::HostOptions
    pub fn connect_console_input(&mut self, link: ConsoleInputLink) {
        if let Some(fd) = self.options.console_input {
            self.host_input = Some(HostInput::new(fd, Box::new(link.input), link.drained));
            self.input_to_virtio = true;
        }
    }

    /// Attaches a GDB stub on `server`'s socket (see [`crate::gdb`]): the
    /// VM starts paused at its entry and runs once gdb continues. Asks the
    /// host first what it can do for a debugger and returns it.
    pub fn attach_gdb(&mut self, server: GdbServer) -> Result<HostDebug, VmmError> {
        let host = crate::gdb::probe::probe(&self._kvm)?;
        if !host.data_breakpoints {
            log::warn!(
                "gdb: this host's KVM reports no data breakpoints (a write to a watched \
                 address does not exit); watchpoints are kept by single-stepping the guest"
            );
        }
        if !host.user_mode_debug {
            log::warn!(
                "gdb: this host's KVM cannot debug guest user code (a single step at CPL3 \
                 raises #DB in the guest instead of exiting; breakpoints there never fire): \
                 only kernel-mode (CPL0) code can be stepped and stopped at"
            );
        }
        let exits = Arc::new(DebugExits::new().map_err(|e| VmmError::Gdb(GdbError::Thread(e)))?);
        // The vCPU threads `create` started are confined without
        // KVM_SET_GUEST_DEBUG: let them go (dropping joins them) so that
        // `run` starts debuggable ones.
        self.threads = None;
        self.gdb = Some(AttachedGdb {
            server,
            host,
            exits,
        });
        self.debugged = true;
        Ok(host)
    }

    /// A handle to stop this VM from another thread or a signal handler.
    pub fn handle(&self) -> VmHandle {
        VmHandle::new(self.control.clone(), self.wake.clone())
    }

    /// Interrupt lines for devices: KVM irqfds on the PC platform,
    /// unconnected lines on the minimal one.
    pub fn interrupt_lines(&self) -> KvmInterruptLines<'_> {
        KvmInterruptLines::new(&self.vm_fd, self.irqchip).explained(self.options.explain.clone())
    }

    /// What [`vmm_devices::pc::build_devices`] needs to build this VM's
    /// device set: the PC set with an irqchip, the minimal set without;
    /// the VM's stop logic as the devices' event sink; the RAM sizes for
    /// the CMOS; output to `console`.
    pub fn device_options(&self, console: Console) -> DeviceSetOptions {
        let layout = self.ram.layout();
        let below_4g_end = layout.low_ram_end();
        DeviceSetOptions {
            set: if self.irqchip {
                DeviceSet::Pc
            } else {
                DeviceSet::Minimal
            },
            console,
            events: self.control.clone(),
            memory: CmosMemorySizes {
                below_4g_end,
                above_4g_size: layout.size() - below_4g_end,
            },
            print_post_codes: self.options.print_post_codes,
            uart_input: self.options.console_input.is_some(),
        }
    }

    /// Puts `devices` behind this VM's exit dispatcher (replacing any
    /// attached before) and, with console input, connects the host's input
    /// to their UART (unless [`Self::connect_console_input`] gave it to a
    /// virtio console).
    pub fn attach_devices(&mut self, devices: BuiltDevices) {
        if let (Some(before), Some(cmos)) = (self.cmos_kept.take(), &devices.handles.cmos) {
            // A reboot: the CMOS RAM and clock survive it, as on a PC.
            if let Err(e) = cmos.keep_across_reset(&before) {
                log::warn!("reboot: the CMOS starts over ({e})");
            }
        }
        self.bus = devices.bus;
        self.post = Some(devices.post);
        self.timed = devices.timed;
        self.control
            .host
            .set_keyboard(devices.handles.i8042.clone());
        self.console = Some(devices.console);
        self.snap.devices = Some(devices.handles);
        if self.input_to_virtio {
            return;
        }
        self.host_input = match (self.options.console_input, devices.uart_rx_drained) {
            (Some(fd), Some(drained)) => Some(HostInput::new(fd, Box::new(devices.uart), drained)),
            _ => None,
        };
    }

    /// Statistics as of now, from the live counters.
    fn stats_now(
        control: &VmControl,
        dispatcher: &ExitDispatcher,
        fallback: Option<&EmulationFallback>,
        vcpus: &[(u64, Arc<VcpuMetrics>)],
        wall: Duration,
    ) -> VmStats {
        let mut latency = Vec::new();
        for kind in ExitKind::ALL {
            let mut merged = LatencySnapshot::default();
            for (_, m) in vcpus {
                merged.merge(&m.latency(kind));
            }
            if merged.count > 0 {
                latency.push((kind, merged));
            }
        }
        VmStats {
            exits_by_kind: dispatcher.exits_by_kind(),
            bus: dispatcher.bus().access_counts(),
            vcpus: vcpus
                .iter()
                .map(|(i, m)| {
                    (
                        *i,
                        VcpuStats {
                            exits: m.exits(),
                            run_time: m.run_time(),
                            handle_time: m.handle_time(),
                        },
                    )
                })
                .collect(),
            latency,
            emulation_fallback: fallback.map(|f| f.stats()).unwrap_or_default(),
            wall,
            startup: None,
            reboots: control.reboots(),
            startup_phases: Default::default(),
        }
    }

    /// Waits for the first vCPU to leave its loop, the timeout, or a stop
    /// request through a [`VmHandle`], feeding the metrics sink on its
    /// interval meanwhile.
    fn watch(&mut self, run: Running<'_>, events: &mut EventLoop) -> Option<u64> {
        let Running {
            dispatcher,
            started,
            done,
            vcpus,
            threads,
            devices,
            suspender,
        } = run;
        // A restored VM starts paused, with the snapshot's clock for its
        // resume.
        let mut pauser = if self.control.run_state() == RunState::Paused {
            Pauser::with_clock(self.snap.restored_clock.take())
        } else {
            Pauser::default()
        };
        let mut quiet_check = self
            .console
            .as_ref()
            .filter(|_| !self.snap.restored && !self.debugged)
            .map(|_| started + QUIET_HINT_AFTER);
        let deadline = self
            .options
            .deadline
            .or_else(|| self.options.timeout.map(|t| started + t));
        let mut next_report = self
            .options
            .metrics
            .as_ref()
            .map(|(every, _)| started + *every);
        loop {
            if self.control.stop_requested() {
                self.control.stop(VmOutcome::Stopped);
                return None;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.control.stop(VmOutcome::Timeout {
                    after: started.elapsed(),
                });
                return None;
            }
            match (self.control.pause_wanted(), self.control.run_state()) {
                (true, RunState::Running) => {
                    let end = pauser.pause(&self.control, &self.vm_fd, threads, done, devices);
                    if let PauseEnd::VcpuEnded(i) = end {
                        return Some(i);
                    }
                    continue;
                }
                (false, RunState::Paused) => {
                    pauser.resume(&self.control, &self.vm_fd, devices);
                }
                (_, RunState::Suspended) if self.control.wake_wanted() => {
                    suspender.wake(&self.control, &self.vm_fd, self.ram.memory(), devices);
                    continue;
                }
                _ => {}
            }
            if let Some(request) = self.control.snapshot.take() {
                let result = self.take_snapshot(&request, &pauser, threads.len());
                self.control.snapshot.finish(result);
            }
            if quiet_check.is_some_and(|at| now >= at) {
                quiet_check = None;
                self.hint_if_quiet(dispatcher);
            }
            // A flush through the handle: a report now, out of schedule.
            if self.control.host.flush_pending() {
                let stats = Self::stats_now(
                    &self.control,
                    dispatcher,
                    self.fallback.as_deref(),
                    vcpus,
                    started.elapsed(),
                );
                if let Some((_, sink)) = self.options.metrics.as_mut() {
                    sink(&stats);
                }
                self.control.host.flush_served();
            }
            if let Some(at) = next_report.filter(|at| now >= *at) {
                let stats = Self::stats_now(
                    &self.control,
                    dispatcher,
                    self.fallback.as_deref(),
                    vcpus,
                    started.elapsed(),
                );
                if let Some((every, sink)) = self.options.metrics.as_mut() {
                    sink(&stats);
                    next_report = Some(at + *every);
                }
            }
            // Nothing to poll for: a stop request, console input and vCPU
            // completion all wake the loop through their file descriptors.
            let wait = [deadline, next_report, quiet_check]
                .into_iter()
                .flatten()
                .map(|t| t.saturating_duration_since(now))
                .min();
            match done.try_recv() {
                Ok(i) => return Some(i),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return None,
            }
            // -1: no timer, wait for an event.
            let ms = wait.map_or(-1, |w| {
                i32::try_from(w.as_millis()).unwrap_or(i32::MAX).max(1)
            });
            if let Err(e) = events.run_with_timeout(ms) {
                log::warn!("event loop: {e:?}");
                std::thread::sleep(wait.unwrap_or(KICK_RETRY));
            }
        }
    }

    /// Takes the snapshot a handle asked for, if the VM is paused.
    fn take_snapshot(
        &mut self,
        request: &SnapshotRequest,
        pauser: &Pauser,
        vcpus: usize,
    ) -> Result<SnapshotInfo, SnapshotError> {
        if self.control.run_state() != RunState::Paused {
            return Err(SnapshotError::NotPaused);
        }
        // A VM restored paused is Paused before its vCPU threads have
        // parked (they may still be on their way to the first KVM_RUN): a
        // thread answers only requests made after it parked, so wait for
        // all of them (collecting then times out if one never comes).
        self.control
            .wait_parked(vcpus, crate::snapshot::VCPU_SAVE_TIMEOUT);
        let source = SnapshotSource {
            vm_fd: &self.vm_fd,
            ram: &self.ram,
            irqchip: self.irqchip,
            control: &self.control,
            virtio: &self.virtio,
            clock: pauser.clock(),
            vcpus,
        };
        take_snapshot(&mut self.snap, &source, request)
    }

    /// Logs a hint when the guest has not written a byte to its console
    /// yet: a Linux kernel booting slowly looks exactly like a hung VMM.
    fn hint_if_quiet(&self, dispatcher: &ExitDispatcher) {
        if self.console.as_ref().is_some_and(|c| c.bytes_written() > 0) {
            return;
        }
        let exits: u64 = dispatcher.exits_by_kind().iter().map(|(_, n)| n).sum();
        log::warn!(
            "no guest output {} s after the start; the guest is running ({exits} exits so far) \
             but has written nothing to its serial or debug console. A Linux kernel prints \
             nothing until its console is up: earlyprintk=serial,ttyS0 on its command line \
             shows its early progress (slow where KVM emulates guest kernel code)",
            QUIET_HINT_AFTER.as_secs()
        );
    }

    /// Guest memory, to inspect or prepare before running.
    pub fn memory(&self) -> &GuestMemoryMmap {
        self.ram.memory()
    }

    /// The KVM VM, for extra set-up before running.
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm_fd
    }

    /// Runs the guest until it halts, exits through debug-exit, faults, or
    /// hits a limit. Every vCPU thread is stopped and joined before this
    /// returns, whatever the outcome.
    ///
    /// With seccomp on (the default), every vCPU thread and the calling
    /// thread are confined to their system-call lists before the guest runs
    /// (see [`crate::seccomp`]); the calling thread stays confined afterwards.
    pub fn run(self) -> Result<RunReport, VmmError> {
        self.run_boot().0
    }

    /// [`Self::run`], also handing back what the next boot of a rebooting
    /// VM needs (see [`crate::reboot`]).
    pub(crate) fn run_boot(mut self) -> (Result<RunReport, VmmError>, Leftovers) {
        let started = Instant::now();
        let result = self.run_once(started);
        let leftovers = Leftovers {
            control: self.control.clone(),
            wake: self.wake.clone(),
            metrics: self.options.metrics.take(),
            deadline: self
                .options
                .deadline
                .or_else(|| self.options.timeout.map(|t| started + t)),
            cmos: self
                .snap
                .devices
                .as_ref()
                .and_then(|d| d.cmos.as_ref())
                .map(|c| c.state()),
        };
        (result, leftovers)
    }

    fn run_once(&mut self, started: Instant) -> Result<RunReport, VmmError> {
        self.options.startup.mark(Mark::RunEntered);
        install_kick_handler()?;
        if self.options.seccomp {
            self.options.startup.seccomp(install_sigsys_handler)?;
        }
        // Guest code runs only once every thread is confined.
        let vcpu_count = self.vcpus.len();
        let gate = Arc::new(Barrier::new(vcpu_count + 1));
        let (done_tx, done_rx) = mpsc::channel();
        let wakeup = self.wake.clone();
        let transports: Vec<SharedTransport> = self.virtio.iter().map(|(_, t)| t.clone()).collect();
        for (slot, t) in &self.virtio {
            let name = format!("virtio-{:?}", slot.kind).to_lowercase();
            let window = Arc::new(MmioWindow::new(t.clone()));
            self.bus
                .register_mmio(&name, MmioAddress(slot.base), WINDOW, window)?;
        }
        let devices = DeviceThread::spawn(&transports, self.options.seccomp)?;
        if self.gdb.is_some() {
            // Stopped at the entry, before the first instruction, for gdb.
            self.control.want_pause(true);
            self.control.set_run_state(RunState::Paused);
        }
        let start_paused = self.control.run_state() == RunState::Paused;
        if start_paused {
            if let Some(d) = &devices {
                d.pause();
            }
        }
        let dispatcher = Arc::new(
            ExitDispatcher::new(
                std::mem::take(&mut self.bus),
                self.control.clone(),
                self.options.trace_io,
            )
            .with_observers(self.options.explain.clone(), self.options.timeline.clone()),
        );
        let mut events: EventLoop = EventManager::new().map_err(VmmError::EventLoop)?;
        events.add_subscriber(Arc::new(Mutex::new(Wakeup(wakeup.clone()))));
        if let Some(input) = self.host_input.take() {
            events.add_subscriber(Arc::new(Mutex::new(input)));
        }
        // Timerfds are made here, before the main thread is confined.
        for link in std::mem::take(&mut self.timed) {
            events.add_subscriber(Arc::new(Mutex::new(DeviceTimer::new(link)?)));
        }
        let suspender = Suspender::new(&self.vm_fd, self.irqchip, self.facs)?;
        let metrics: Vec<(u64, Arc<VcpuMetrics>)> = self
            .vcpus
            .iter()
            .map(|v| (v.index(), v.metrics()))
            .collect();
        let phys_bits: Vec<u32> = self
            .vcpus
            .iter()
            .map(|v| crate::gdb::phys_bits(v.cpuid()))
            .collect();
        let debug_link = self
            .gdb
            .as_ref()
            .map(|g| VcpuDebugLink::new(g.exits.clone(), self.control.clone(), wakeup.clone()));
        let mut threads: Vec<JoinHandle<Option<VcpuResult>>> = Vec::new();
        let mut indices = Vec::new();
        let mut reported = Vec::new();
        // A restored VM's threads start here; a created one's are waiting.
        let mut waiting = match self.threads.take() {
            Some(t) => t,
            None => VcpuThreads::spawn(
                vcpu_count as u64,
                vcpu_role(
                    self.options.seccomp,
                    self.options.explain.is_some(),
                    self.gdb.is_some(),
                ),
                None,
            )
            .map_err(|(index, source)| VmmError::SpawnVcpu { index, source })?,
        };
        for vcpu in std::mem::take(&mut self.vcpus) {
            let index = vcpu.index();
            let job = self.vcpu_job(
                vcpu,
                &dispatcher,
                done_tx.clone(),
                wakeup.clone(),
                gate.clone(),
                debug_link.clone(),
            );
            match waiting.start(index, job) {
                Ok(t) => {
                    threads.push(t);
                    indices.push(index);
                }
                Err(source) => {
                    self.control.stop_all();
                    // Threads already started wait at the gate: open it
                    // (it counts every vCPU and this thread), standing in
                    // for the vCPUs that have no thread.
                    for _ in threads.len()..vcpu_count {
                        let gate = gate.clone();
                        std::thread::spawn(move || gate.wait());
                    }
                    gate.wait();
                    if let Some(d) = devices {
                        d.stop();
                    }
                    stop_and_join(&threads, &indices, &done_rx, &mut reported);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(VmmError::SpawnVcpu { index, source });
                }
            }
        }
        drop(done_tx);
        let stub = self.gdb.take().and_then(|gdb| {
            let parts = StubParts {
                handle: self.handle(),
                dispatcher: dispatcher.clone(),
                memory: self.ram.memory().clone(),
                phys_bits,
                seccomp: self.options.seccomp,
            };
            match crate::gdb::spawn(gdb, parts) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::error!("gdb: {e}; the VM stops");
                    self.control.stop_all();
                    None
                }
            }
        });
        let confined = if self.options.seccomp {
            let ahead = self.options.main_filter.take();
            self.options.startup.seccomp(|| match ahead {
                Some(program) => seccomp::apply(ThreadRole::Main, &program),
                None => confine_current_thread(ThreadRole::Main),
            })
        } else {
            Ok(())
        };
        if confined.is_err() {
            self.control.stop_all();
        }
        if self.snap.restored && !start_paused {
            // Restored and resumed at once: requests the guest made
            // available before the snapshot whose notify the device never
            // served (it came as the VM paused, or the device had not got
            // to it) are served now, as a resume serves them (Firecracker
            // also processes every queue after a restore).
            if let Some(d) = &devices {
                d.resume();
            }
        }
        if !start_paused {
            // Restored and resumed at once: the snapshot's clock, set as
            // late as possible so the guest sees no time pass.
            if let Some(mut clock) = self.snap.restored_clock.take() {
                clock.flags = 0;
                if let Err(e) = self.vm_fd.set_clock(&clock) {
                    log::warn!("restore: KVM_SET_CLOCK failed ({e}); the guest clock jumps");
                }
            }
        }
        gate.wait();
        self.options.startup.mark(Mark::GateOpen);
        let startup = self.options.started_at.map(|t| t.elapsed());
        if let Some(d) = startup {
            log::info!(
                "guest entered {:.3} ms after the VMM started",
                d.as_secs_f64() * 1e3
            );
        }

        let running = Running {
            dispatcher: &dispatcher,
            started,
            done: &done_rx,
            vcpus: &metrics,
            threads: &threads,
            devices: devices.as_ref(),
            suspender: &suspender,
        };
        if let Some(i) = self.watch(running, &mut events) {
            reported.push(i);
        }
        // Whatever ended one vCPU ends the VM; parked vCPUs wake to see it.
        self.control.stop_all();
        self.control.wake_waiters();
        stop_and_join(&threads, &indices, &done_rx, &mut reported);
        // No vCPU runs now: the devices finish and make writes durable.
        if let Some(d) = devices {
            d.stop();
        }
        let wall = started.elapsed();
        // The stub has told gdb how the VM ended; the socket file goes
        // here, where unlink is allowed.
        if let Some(stub) = stub {
            drop(stub.join());
        }

        let mut error = None;
        for t in threads {
            match t.join() {
                Ok(Some((_, Err(VcpuFailure::Run(e)), _))) => {
                    error.get_or_insert(VmmError::Vcpu(e));
                }
                Ok(Some((_, Err(VcpuFailure::Seccomp(e)), _))) => {
                    error.get_or_insert(VmmError::Seccomp(e));
                }
                Ok(Some((index, Err(VcpuFailure::Wake(source)), _))) => {
                    error.get_or_insert(VmmError::WakeState { index, source });
                }
                Ok(_) => {}
                Err(_) => {
                    error = Some(VmmError::VcpuPanicked);
                }
            }
        }
        if let Err(e) = confined {
            return Err(e.into());
        }
        let outcome = match (self.control.outcome(), error) {
            (_, Some(e @ VmmError::VcpuPanicked)) => return Err(e),
            (Some(outcome), _) => outcome,
            (None, Some(e)) => return Err(e),
            // Unreachable in practice: every way out records an outcome.
            (None, None) => VmOutcome::Timeout { after: wall },
        };
        let mut stats = Self::stats_now(
            &self.control,
            &dispatcher,
            self.fallback.as_deref(),
            &metrics,
            wall,
        );
        stats.startup_phases = self.options.startup.times();
        // With every phase measured, the total is their sum (to vCPU 0's
        // first KVM_RUN); else to the gate.
        stats.startup = match stats.startup_phases.get(StartupPhase::FirstEntry) {
            Some(_) if stats.startup_phases.get(StartupPhase::Parse).is_some() => {
                Some(stats.startup_phases.phases.iter().map(|(_, d)| *d).sum())
            }
            _ => startup,
        };
        if let Some(e) = &self.options.explain {
            e.finish();
            let port_mmio: u64 = stats
                .exits_by_kind
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k,
                        ExitKind::IoIn | ExitKind::IoOut | ExitKind::MmioRead | ExitKind::MmioWrite
                    )
                })
                .map(|(_, n)| n)
                .sum();
            e.say(&format!(
                "the run ends: {outcome}; the VMM handled {} port/MMIO exits",
                group_thousands(port_mmio)
            ));
        }
        let timeline = self.options.timeline.as_ref().map(|t| {
            t.phase("run ended");
            t.snapshot()
        });
        if let Some((_, sink)) = self.options.metrics.as_mut() {
            sink(&stats);
        }
        // Flushes asked for while the run ended are served by this report.
        self.control.host.flush_served();
        Ok(RunReport {
            outcome,
            stats,
            post_codes: self.post.as_ref().map(|p| p.codes()).unwrap_or_default(),
            timeline,
        })
    }

    /// What vCPU `vcpu`'s thread does once it has its vCPU: wait at the
    /// gate, run the guest, park for pauses and S3, report its end.
    fn vcpu_job(
        &self,
        mut vcpu: Vcpu,
        dispatcher: &Arc<ExitDispatcher>,
        done: Sender<u64>,
        wakeup: Arc<EventFd>,
        gate: Arc<Barrier>,
        debug: Option<VcpuDebugLink>,
    ) -> VcpuJob<VcpuResult> {
        let explain = self.options.explain.clone();
        let timeline = self.options.timeline.clone();
        let dispatcher = dispatcher.clone();
        let control = self.control.clone();
        let index = vcpu.index();
        let msrs = self.snap.msrs.clone();
        let lapic = self.irqchip;
        let first_entry = (vcpu.index() == 0).then(|| self.options.startup.first_entry());
        Box::new(move |confined| {
            let done = DoneSignal(done, index, wakeup);
            gate.wait();
            if let (Some(t), 0) = (&timeline, index) {
                t.phase("guest entered");
            }
            say(&explain, || {
                format!("KVM_RUN: vCPU {index} enters the guest; this thread runs guest code until an exit")
            });
            if let Some(at) = &first_entry {
                let _ = at.set(Instant::now());
            }
            // The last S3 wake this vCPU loaded.
            let mut woken = 0;
            let result = match confined {
                Ok(()) => loop {
                    let stop = match (vcpu.run(&*dispatcher), &debug) {
                        // gdb's single step or breakpoint: the stub takes
                        // it and the VM pauses for gdb.
                        (Ok(VcpuStop::Debug { pc, dr6, .. }), Some(link)) => {
                            link.debug_exit(crate::gdb::DebugExit {
                                vcpu: index,
                                pc,
                                dr6,
                            });
                            Ok(VcpuStop::StopRequested)
                        }
                        (stop, _) => stop,
                    };
                    // Out of KVM_RUN for a pause or S3, not a stop:
                    // park, then run on from the same state (a pause)
                    // or from the wake state (S3).
                    if matches!(stop, Ok(VcpuStop::StopRequested))
                        && control.pause_wanted()
                        && !control.is_stopping()
                    {
                        // While parked, the main loop may ask for this
                        // vCPU's state (a snapshot): only this thread
                        // may touch its fd.
                        control.park(
                            index,
                            &mut Parked {
                                vcpu: &mut vcpu,
                                save: |v: &mut Vcpu| save_vcpu(v, &dispatcher, &msrs, lapic),
                            },
                        );
                        if let Some(reset) = control.wake_reset_since(woken) {
                            woken = reset.generation;
                            let entry = (index == 0).then_some(reset.entry);
                            if let Err(e) = vcpu.reset_for_wake(entry, &*dispatcher) {
                                break Err(VcpuFailure::Wake(e));
                            }
                        }
                        continue;
                    }
                    break stop.map_err(VcpuFailure::Run);
                },
                Err(e) => Err(VcpuFailure::Seccomp(e)),
            };
            if explain.is_some() {
                match vcpu.fd().get_regs() {
                    Ok(regs) => say(&explain, || final_regs_line(index, &regs)),
                    Err(e) => say(&explain, || {
                        format!("KVM_GET_REGS (vCPU {index}) failed: {e}")
                    }),
                }
            }
            match &result {
                Ok(stop) => {
                    if let Some(outcome) = outcome_of(index, stop) {
                        control.stop(outcome);
                    }
                }
                Err(_) => control.stop_all(),
            }
            // Report as soon as the run loop is left: from here on the
            // thread must not be kicked (signals during vCPU teardown
            // can keep it from finishing on nested KVM).
            drop(done);
            (index, result, vcpu.stats())
        })
    }
}

/// The seccomp role of a vCPU thread (none: seccomp off). Showing the
/// final registers (`--explain`) needs KVM_GET_REGS on the thread; a
/// debugged vCPU (`--gdb`) KVM_SET_GUEST_DEBUG.
pub(crate) fn vcpu_role(seccomp: bool, explained: bool, debugged: bool) -> Option<ThreadRole> {
    match (seccomp, explained, debugged) {
        (false, _, _) => None,
        (true, _, true) => Some(ThreadRole::VcpuDebugged),
        (true, false, false) => Some(ThreadRole::Vcpu),
        (true, true, false) => Some(ThreadRole::VcpuExplained),
    }
}

/// The VM outcome a vCPU's stop implies (`None` when the stop was requested
/// by whoever already recorded the outcome).
fn outcome_of(vcpu: u64, stop: &VcpuStop) -> Option<VmOutcome> {
    match stop {
        VcpuStop::Halted => Some(VmOutcome::Halted { vcpu }),
        VcpuStop::Shutdown => Some(VmOutcome::TripleFault { vcpu }),
        VcpuStop::StopRequested => None,
        other => Some(VmOutcome::VcpuFault {
            vcpu,
            stop: other.clone(),
        }),
    }
}

/// Kicks every vCPU thread still in its run loop until each has reported
/// that it left it. Threads that reported are never signalled again.
fn stop_and_join<T>(
    threads: &[JoinHandle<T>],
    indices: &[u64],
    done: &mpsc::Receiver<u64>,
    reported: &mut Vec<u64>,
) {
    loop {
        while let Ok(i) = done.try_recv() {
            reported.push(i);
        }
        let running: Vec<&JoinHandle<T>> = threads
            .iter()
            .zip(indices)
            .filter(|(t, i)| !reported.contains(i) && !t.is_finished())
            .map(|(t, _)| t)
            .collect();
        if running.is_empty() {
            return;
        }
        for t in running {
            // ESRCH (the thread just ended) is fine.
            let _ = t.kill(kick_signal());
        }
        if let Ok(i) = done.recv_timeout(KICK_RETRY) {
            reported.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_outcome_of_stops() {
        assert_eq!(
            outcome_of(1, &VcpuStop::Halted),
            Some(VmOutcome::Halted { vcpu: 1 })
        );
        assert_eq!(
            outcome_of(0, &VcpuStop::Shutdown),
            Some(VmOutcome::TripleFault { vcpu: 0 })
        );
        assert_eq!(outcome_of(0, &VcpuStop::StopRequested), None);
        assert!(matches!(
            outcome_of(0, &VcpuStop::FailEntry { reason: 7, cpu: 0 }),
            Some(VmOutcome::VcpuFault { .. })
        ));
    }
}
