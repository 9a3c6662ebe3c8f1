//! A built VM and its run: one thread per vCPU, a watchdog on the calling
//! thread, and a clean stop (every vCPU kicked and joined) however it ends.

use std::os::unix::io::RawFd;
use std::sync::mpsc::{self, Sender, TryRecvError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_cpu::kick::{install_kick_handler, kick_signal};
use vmm_cpu::metrics::{LatencySnapshot, VcpuMetrics};
use vmm_cpu::{ExitKind, Vcpu, VcpuError, VcpuStats, VcpuStop};
use vmm_devices::legacy::{CmosMemorySizes, PostCode, PostCodePort};
use vmm_devices::pc::{BuiltDevices, DeviceSet, DeviceSetOptions};
use vmm_devices::{Console, IoBus};
use vmm_memory::GuestRam;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};
use vmm_sys_util::signal::Killable;

use crate::control::RunState;
use crate::control::VmControl;
use crate::dispatch::ExitDispatcher;
use crate::error::VmmError;
use crate::handle::VmHandle;
use crate::host_input::HostInput;
use crate::outcome::VmOutcome;
use crate::pause::{PauseEnd, Pauser};
use crate::platform::KvmInterruptLines;
use crate::seccomp::{confine_current_thread, install_sigsys_handler, SeccompError, ThreadRole};
use crate::stats::VmStats;
use crate::virtio::{
    register_queue_notifies, ConsoleInputLink, DeviceThread, SharedTransport, VirtioSlot, WINDOW,
};
use vm_device::bus::MmioAddress;
use vmm_devices::pc::InterruptLines;
use vmm_devices::virtio::{MmioTransport, MmioWindow, VirtioDevice};

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
}

/// What [`Vm::create`] assembled, in the order it must be dropped.
pub(crate) struct VmParts {
    pub vcpus: Vec<Vcpu>,
    pub vm_fd: VmFd,
    pub kvm: Kvm,
    pub ram: GuestRam,
    pub irqchip: bool,
    pub control: Arc<VmControl>,
    pub options: RunOptions,
    pub virtio_slots: Vec<VirtioSlot>,
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
    vm_fd: VmFd,
    _kvm: Kvm,
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
enum VcpuFailure {
    Run(VcpuError),
    Seccomp(SeccompError),
}

type VcpuResult = (u64, Result<VcpuStop, VcpuFailure>, VcpuStats);

/// What the main loop watches while the guest runs.
struct Running<'a> {
    dispatcher: &'a ExitDispatcher,
    started: Instant,
    done: &'a mpsc::Receiver<u64>,
    vcpus: &'a [(u64, Arc<VcpuMetrics>)],
    threads: &'a [JoinHandle<VcpuResult>],
    devices: Option<&'a DeviceThread>,
}

impl Vm {
    pub(crate) fn new(parts: VmParts) -> Result<Self, VmmError> {
        let VmParts {
            vcpus,
            vm_fd,
            kvm,
            ram,
            irqchip,
            control,
            options,
            virtio_slots,
        } = parts;
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmmError::EventFd)?);
        Ok(Vm {
            vcpus,
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
        })
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
        let transport = MmioTransport::new(device, self.ram.memory().clone(), line)?;
        register_queue_notifies(&self.vm_fd, slot.base, &transport)?;
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

    /// A handle to stop this VM from another thread or a signal handler.
    pub fn handle(&self) -> VmHandle {
        VmHandle::new(self.control.clone(), self.wake.clone())
    }

    /// Interrupt lines for devices: KVM irqfds on the PC platform,
    /// unconnected lines on the minimal one.
    pub fn interrupt_lines(&self) -> KvmInterruptLines<'_> {
        KvmInterruptLines::new(&self.vm_fd, self.irqchip)
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
        self.bus = devices.bus;
        self.post = Some(devices.post);
        self.console = Some(devices.console);
        if self.input_to_virtio {
            return;
        }
        self.host_input = match (self.options.console_input, devices.uart_rx_drained) {
            (Some(fd), Some(drained)) => Some(HostInput::new(fd, Box::new(devices.uart), drained)),
            _ => None,
        };
    }

    /// Statistics as of now, from the live counters.
    fn snapshot(
        dispatcher: &ExitDispatcher,
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
            wall,
            startup: None,
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
        } = run;
        let mut pauser = Pauser::default();
        let mut quiet_check = self.console.as_ref().map(|_| started + QUIET_HINT_AFTER);
        let deadline = self.options.timeout.map(|t| started + t);
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
                _ => {}
            }
            if quiet_check.is_some_and(|at| now >= at) {
                quiet_check = None;
                self.hint_if_quiet(dispatcher);
            }
            if let Some(at) = next_report.filter(|at| now >= *at) {
                let stats = Self::snapshot(dispatcher, vcpus, started.elapsed());
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
    pub fn run(mut self) -> Result<RunReport, VmmError> {
        install_kick_handler()?;
        if self.options.seccomp {
            install_sigsys_handler()?;
        }
        // Guest code runs only once every thread is confined.
        let vcpu_count = self.vcpus.len();
        let gate = Arc::new(Barrier::new(vcpu_count + 1));
        let started = Instant::now();
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
        let dispatcher = Arc::new(ExitDispatcher::new(
            std::mem::take(&mut self.bus),
            self.control.clone(),
            self.options.trace_io,
        ));
        let mut events: EventLoop = EventManager::new().map_err(VmmError::EventLoop)?;
        events.add_subscriber(Arc::new(Mutex::new(Wakeup(wakeup.clone()))));
        if let Some(input) = self.host_input.take() {
            events.add_subscriber(Arc::new(Mutex::new(input)));
        }
        let metrics: Vec<(u64, Arc<VcpuMetrics>)> = self
            .vcpus
            .iter()
            .map(|v| (v.index(), v.metrics()))
            .collect();
        let mut threads: Vec<JoinHandle<VcpuResult>> = Vec::new();
        let mut indices = Vec::new();
        let mut reported = Vec::new();
        for vcpu in std::mem::take(&mut self.vcpus) {
            let index = vcpu.index();
            let spawned = self.spawn_vcpu(
                vcpu,
                &dispatcher,
                done_tx.clone(),
                wakeup.clone(),
                gate.clone(),
            );
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    indices.push(index);
                }
                Err(source) => {
                    self.control.stop_all();
                    // Threads already started wait at the gate: open it
                    // (the gate counts every vCPU and this thread).
                    for _ in threads.len()..vcpu_count {
                        let _ = gate.wait();
                    }
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
        let confined = if self.options.seccomp {
            confine_current_thread(ThreadRole::Main)
        } else {
            Ok(())
        };
        if confined.is_err() {
            self.control.stop_all();
        }
        gate.wait();
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

        let mut error = None;
        for t in threads {
            match t.join() {
                Ok((_, Err(VcpuFailure::Run(e)), _)) => {
                    error.get_or_insert(VmmError::Vcpu(e));
                }
                Ok((_, Err(VcpuFailure::Seccomp(e)), _)) => {
                    error.get_or_insert(VmmError::Seccomp(e));
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
        let mut stats = Self::snapshot(&dispatcher, &metrics, wall);
        stats.startup = startup;
        if let Some((_, sink)) = self.options.metrics.as_mut() {
            sink(&stats);
        }
        Ok(RunReport {
            outcome,
            stats,
            post_codes: self.post.as_ref().map(|p| p.codes()).unwrap_or_default(),
        })
    }

    fn spawn_vcpu(
        &self,
        mut vcpu: Vcpu,
        dispatcher: &Arc<ExitDispatcher>,
        done: Sender<u64>,
        wakeup: Arc<EventFd>,
        gate: Arc<Barrier>,
    ) -> std::io::Result<JoinHandle<VcpuResult>> {
        let seccomp = self.options.seccomp;
        let dispatcher = dispatcher.clone();
        let control = self.control.clone();
        let index = vcpu.index();
        std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || {
                let done = DoneSignal(done, index, wakeup);
                let confined = if seccomp {
                    confine_current_thread(ThreadRole::Vcpu)
                } else {
                    Ok(())
                };
                gate.wait();
                let result = match confined {
                    Ok(()) => loop {
                        let stop = vcpu.run(&*dispatcher);
                        // Out of KVM_RUN for a pause, not a stop: park,
                        // then run on from the same state.
                        if matches!(stop, Ok(VcpuStop::StopRequested))
                            && control.pause_wanted()
                            && !control.is_stopping()
                        {
                            control.park();
                            continue;
                        }
                        break stop.map_err(VcpuFailure::Run);
                    },
                    Err(e) => Err(VcpuFailure::Seccomp(e)),
                };
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
