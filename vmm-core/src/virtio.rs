//! virtio-mmio devices in a KVM VM: where each one sits (window, GSI), how
//! the guest finds it (kernel command line, DSDT), and the KVM plumbing
//! that keeps the vCPU threads out of the data path.
//!
//! A guest's QueueNotify write is caught by KVM (an ioeventfd with the
//! queue index as datamatch) and never exits to userspace; the device
//! thread (`DeviceThread`) wakes on that eventfd, serves the queue under
//! the transport's mutex, and raises the device's interrupt through its
//! irqfd. Only register accesses (set-up, InterruptStatus/ACK) are vCPU
//! exits.

use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{IoEventAddress, VmFd};
use serde::{Deserialize, Serialize};
use virtio_bindings::virtio_ids::{
    VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET, VIRTIO_ID_RNG, VIRTIO_ID_VSOCK,
};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use vmm_devices::pc::{virtio_slot, VIRTIO_GSIS};
use vmm_devices::virtio::block::{BlockConfig, VirtioBlock};
use vmm_devices::virtio::console::{ConsoleInput, VirtioConsole};
use vmm_devices::virtio::net::{MacAddr, NetError, Tap, VirtioNet};
use vmm_devices::virtio::rng::VirtioRng;
use vmm_devices::virtio::vsock::VirtioVsock;
use vmm_devices::virtio::{MmioTransport, VirtioDevice, VIRTIO_MMIO_WINDOW};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::config::{DeviceConfig, DiskConfig, NetConfig, SerialConfig};
use crate::error::VmmError;
use crate::seccomp::{confine_current_thread, ThreadRole};

/// The kinds of virtio device a [`DeviceConfig`] can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtioKind {
    /// virtio-blk.
    Block,
    /// virtio-net.
    Net,
    /// virtio-rng.
    Rng,
    /// virtio-console.
    Console,
    /// virtio-vsock.
    Vsock,
}

impl VirtioKind {
    /// The virtio device ID.
    pub fn device_type(self) -> u32 {
        match self {
            VirtioKind::Block => VIRTIO_ID_BLOCK,
            VirtioKind::Net => VIRTIO_ID_NET,
            VirtioKind::Rng => VIRTIO_ID_RNG,
            VirtioKind::Console => VIRTIO_ID_CONSOLE,
            VirtioKind::Vsock => VIRTIO_ID_VSOCK,
        }
    }
}

/// One virtio device's place in the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioSlot {
    /// What sits there.
    pub kind: VirtioKind,
    /// Its 4 KiB register window.
    pub base: u64,
    /// Its interrupt.
    pub gsi: u32,
}

impl VirtioSlot {
    /// Linux's `virtio_mmio.device=` parameter for this slot
    /// (drivers/virtio/virtio_mmio.c: `<size>@<baseaddr>:<irq>`).
    pub fn cmdline_param(&self) -> String {
        format!("virtio_mmio.device=4K@{:#x}:{}", self.base, self.gsi)
    }
}

/// The virtio devices `devices` asks for, in slot order: disks, network
/// interfaces, entropy, console, vsock.
pub fn virtio_layout(devices: &DeviceConfig) -> Result<Vec<VirtioSlot>, VmmError> {
    let kinds = std::iter::repeat_n(VirtioKind::Block, devices.disks.len())
        .chain(std::iter::repeat_n(VirtioKind::Net, devices.nets.len()))
        .chain(devices.rng.then_some(VirtioKind::Rng))
        .chain(devices.virtio_console.as_ref().map(|_| VirtioKind::Console))
        .chain(devices.vsock.as_ref().map(|_| VirtioKind::Vsock));
    let mut slots = Vec::new();
    for (index, kind) in kinds.enumerate() {
        let (base, gsi) = virtio_slot(index).ok_or(VmmError::TooManyVirtioDevices {
            max: VIRTIO_GSIS.len(),
        })?;
        slots.push(VirtioSlot { kind, base, gsi });
    }
    Ok(slots)
}

/// Appends each slot's `virtio_mmio.device=` parameter to `cmdline`.
pub fn cmdline_with_devices(cmdline: &str, slots: &[VirtioSlot]) -> String {
    let mut line = cmdline.to_string();
    for slot in slots {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&slot.cmdline_param());
    }
    line
}

/// The backends [`build_backends`] made, and the host-input link of a
/// virtio console that reads stdin.
pub struct VirtioBackends {
    /// One per virtio slot, in slot order (the order [`virtio_layout`]
    /// gives and [`crate::Vm::attach_virtio`] expects).
    pub devices: Vec<Box<dyn VirtioDevice>>,
    /// Set when the virtio console is `stdio`: hand it to
    /// [`crate::Vm::connect_console_input`] so host input goes to hvc0.
    pub console_input: Option<ConsoleInputLink>,
}

/// A virtio console's input queue and the eventfd it writes when the
/// queue empties (so host input resumes without polling).
pub struct ConsoleInputLink {
    /// The console's input handle.
    pub input: ConsoleInput,
    /// Written by the device when a delivery empties the queue.
    pub drained: EventFd,
}

/// The backend for each of `devices`' virtio devices, in slot order.
/// Host resources (files, sockets) are opened here, so an unusable one is
/// reported before the guest runs.
pub fn build_backends(devices: &DeviceConfig) -> Result<VirtioBackends, VmmError> {
    let mut backends: Vec<Box<dyn VirtioDevice>> = Vec::new();
    let mut console_input = None;
    let mut nets = devices.nets.iter();
    // Slots list the disks in the configuration's order.
    let mut disks = devices.disks.iter();
    for slot in virtio_layout(devices)? {
        match slot.kind {
            VirtioKind::Block => {
                let Some(disk) = disks.next() else {
                    return Err(VmmError::VirtioSlot {
                        expected: None,
                        got: VIRTIO_ID_BLOCK,
                    });
                };
                backends.push(Box::new(open_disk(disk)?));
            }
            VirtioKind::Net => {
                // The layout has one Net slot per entry of `nets`.
                if let Some(net) = nets.next() {
                    backends.push(Box::new(net_backend(net)?));
                }
            }
            VirtioKind::Rng => backends.push(Box::new(VirtioRng::new())),
            VirtioKind::Console => {
                let config = devices.virtio_console.as_ref();
                let out = config.map_or(Ok(vmm_devices::Console::discard()), |c| c.open())?;
                let console = if config == Some(&SerialConfig::Stdio) {
                    let drained =
                        EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmmError::EventFd)?;
                    let ours = drained.try_clone().map_err(VmmError::EventFd)?;
                    let console =
                        VirtioConsole::with_input_drained(out, ours).map_err(VmmError::EventFd)?;
                    console_input = Some(ConsoleInputLink {
                        input: console.input(),
                        drained,
                    });
                    console
                } else {
                    VirtioConsole::new(out).map_err(VmmError::EventFd)?
                };
                backends.push(Box::new(console));
            }
            VirtioKind::Vsock => {
                // virtio_layout gives a Vsock slot only for a configured one.
                if let Some(v) = &devices.vsock {
                    // The listening socket is made here, before the guest
                    // runs: a bad path is the user's error.
                    let vsock = VirtioVsock::new(v.cid, &v.socket).map_err(VmmError::Vsock)?;
                    backends.push(Box::new(vsock));
                }
            }
        }
    }
    Ok(VirtioBackends {
        devices: backends,
        console_input,
    })
}

/// Opens `net`'s tap and makes its device, with a random locally
/// administered MAC when none is given.
fn net_backend(net: &NetConfig) -> Result<VirtioNet, VmmError> {
    let tap = Tap::open(&net.tap).map_err(NetError::from)?;
    let mac = match net.mac {
        Some(m) => MacAddr(m),
        None => MacAddr::random().map_err(NetError::RandomMac)?,
    };
    let device = VirtioNet::new(Box::new(tap), mac)?;
    log::info!("virtio-net on tap {}, guest MAC {mac}", net.tap);
    Ok(device)
}

/// Opens and locks one `--disk` image.
fn open_disk(disk: &DiskConfig) -> Result<VirtioBlock, VmmError> {
    let mut config = BlockConfig::new(&disk.path).read_only(disk.read_only);
    if let Some(serial) = &disk.serial {
        config = config.serial(serial);
    }
    Ok(config.open()?)
}

/// A transport attached to a VM, shared by the bus (vCPU threads) and the
/// device thread.
pub(crate) type SharedTransport = Arc<Mutex<MmioTransport>>;

/// Registers an ioeventfd per queue of `transport` at `base`'s QueueNotify
/// with the queue index as datamatch: a notify becomes an eventfd signal
/// inside KVM, without a userspace exit.
pub(crate) fn register_queue_notifies(
    vm_fd: &VmFd,
    base: u64,
    transport: &MmioTransport,
) -> Result<(), VmmError> {
    let addr = IoEventAddress::Mmio(base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY));
    for (index, event) in transport.queue_events().iter().enumerate() {
        let datamatch = index as u32;
        vm_fd
            .register_ioevent(event, &addr, datamatch)
            .map_err(|source| VmmError::RegisterIoevent { addr: base, source })?;
    }
    Ok(())
}

/// Serves one transport's queue notifications and host descriptors.
struct TransportEvents {
    transport: SharedTransport,
    queues: Vec<RawFd>,
    host: Vec<RawFd>,
    /// The VM is paused: take no requests.
    paused: Arc<AtomicBool>,
    /// Host-descriptor events that arrived while paused (edge-triggered:
    /// they will not come again), served at the first event after resume.
    missed_host: bool,
}

impl MutEventSubscriber for TransportEvents {
    fn process(&mut self, events: Events, _: &mut EventOps) {
        let fd = events.fd();
        let mut t = crate::lock(&self.transport);
        // Checked under the transport's lock, which a pause takes once
        // after raising the flag: no request starts after a pause returns.
        let paused = self.paused.load(Ordering::SeqCst);
        if let Some(index) = self.queues.iter().position(|q| *q == fd) {
            // Consume the count first: a notify arriving while the queue
            // is served wakes us again. While paused the notify is dropped;
            // resume signals every queue again.
            let _ = t.queue_events()[index].read();
            if paused {
                return;
            }
            t.process_queue(index);
        } else if self.host.contains(&fd) {
            if paused {
                self.missed_host = true;
                return;
            }
            t.process_host_fd(fd);
        }
        if self.missed_host && !paused {
            self.missed_host = false;
            for &h in &self.host {
                t.process_host_fd(h);
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in &self.queues {
            if let Err(e) = ops.add(Events::with_data_raw(*fd, 0, EventSet::IN)) {
                log::warn!("virtio: watching a queue eventfd failed: {e:?}");
            }
        }
        // Edge-triggered: a tap with frames the guest has no buffers for
        // stays readable; the device retries when buffers arrive.
        for fd in &self.host {
            let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(*fd, 0, set)) {
                log::warn!("virtio: watching a host descriptor failed: {e:?}");
            }
        }
    }
}

/// Ends the device thread's loop.
struct StopEvents {
    fd: Arc<EventFd>,
    stop: Arc<AtomicBool>,
}

impl MutEventSubscriber for StopEvents {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.fd.read();
        self.stop.store(true, Ordering::SeqCst);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&*self.fd, EventSet::IN)) {
            log::warn!("virtio: watching the stop eventfd failed: {e:?}");
        }
    }
}

type EventLoop = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

/// The thread that does every virtio device's work, on an event-manager
/// loop, confined by its own seccomp list ([`ThreadRole::Device`]).
pub(crate) struct DeviceThread {
    stop: Arc<EventFd>,
    thread: JoinHandle<()>,
    paused: Arc<AtomicBool>,
    transports: Vec<SharedTransport>,
}

impl DeviceThread {
    /// Starts the thread for `transports` (none: no thread).
    pub fn spawn(
        transports: &[SharedTransport],
        seccomp: bool,
    ) -> Result<Option<DeviceThread>, VmmError> {
        if transports.is_empty() {
            return Ok(None);
        }
        let mut events: EventLoop = EventManager::new().map_err(VmmError::EventLoop)?;
        let stop_fd =
            Arc::new(EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmmError::EventFd)?);
        let stop = Arc::new(AtomicBool::new(false));
        events.add_subscriber(Arc::new(Mutex::new(StopEvents {
            fd: stop_fd.clone(),
            stop: stop.clone(),
        })));
        let paused = Arc::new(AtomicBool::new(false));
        for t in transports {
            let (queues, host) = {
                let g = crate::lock(t);
                let queues = g.queue_events().iter().map(|e| e.as_raw_fd()).collect();
                (queues, g.host_fds())
            };
            events.add_subscriber(Arc::new(Mutex::new(TransportEvents {
                transport: t.clone(),
                queues,
                host,
                paused: paused.clone(),
                missed_host: false,
            })));
        }
        let owned: Vec<SharedTransport> = transports.to_vec();
        let thread = std::thread::Builder::new()
            .name("virtio".into())
            .spawn(move || {
                if seccomp {
                    if let Err(e) = confine_current_thread(ThreadRole::Device) {
                        log::error!("virtio device thread: {e}; devices stay idle");
                        return;
                    }
                }
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = events.run() {
                        log::warn!("virtio device thread: {e:?}");
                    }
                }
                // Acknowledged writes become durable before the VM ends.
                for t in &owned {
                    crate::lock(t).shutdown();
                }
            })
            .map_err(VmmError::SpawnDeviceThread)?;
        Ok(Some(DeviceThread {
            stop: stop_fd,
            thread,
            paused,
            transports: transports.to_vec(),
        }))
    }

    /// Stops taking requests; returns once none is being served.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        for t in &self.transports {
            // Waits for a request in progress on this device to finish.
            drop(crate::lock(t));
        }
    }

    /// Takes requests again, starting with whatever the guest queued
    /// while paused: every queue is signalled once.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        for t in &self.transports {
            for event in crate::lock(t).queue_events() {
                let _ = event.write(1);
            }
        }
    }

    /// Stops the loop, lets every device shut down, joins the thread.
    pub fn stop(self) {
        let _ = self.stop.write(1);
        if self.thread.join().is_err() {
            log::error!("virtio device thread panicked");
        }
    }
}

/// The window a transport covers (for the bus).
pub(crate) const WINDOW: u64 = VIRTIO_MMIO_WINDOW;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DiskConfig, SerialConfig, VsockConfig};

    #[test]
    fn test_virtio_layout_order_and_cmdline() {
        let devices = DeviceConfig {
            disks: vec![
                DiskConfig {
                    path: "/a".into(),
                    read_only: false,
                    serial: None,
                };
                2
            ],
            rng: true,
            virtio_console: Some(SerialConfig::None),
            vsock: Some(VsockConfig {
                cid: 3,
                socket: "/s".into(),
            }),
            ..Default::default()
        };
        let slots = virtio_layout(&devices).unwrap();
        let kinds: Vec<_> = slots.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                VirtioKind::Block,
                VirtioKind::Block,
                VirtioKind::Rng,
                VirtioKind::Console,
                VirtioKind::Vsock
            ]
        );
        assert_eq!(
            cmdline_with_devices("console=ttyS0", &slots[..2]),
            "console=ttyS0 virtio_mmio.device=4K@0xfeb00000:5 virtio_mmio.device=4K@0xfeb01000:6"
        );
        assert_eq!(
            cmdline_with_devices("", &slots[..1]),
            slots[0].cmdline_param()
        );
    }

    #[test]
    fn test_virtio_layout_too_many_devices_is_an_error() {
        let devices = DeviceConfig {
            disks: vec![
                DiskConfig {
                    path: "/a".into(),
                    read_only: false,
                    serial: None,
                };
                VIRTIO_GSIS.len() + 1
            ],
            ..Default::default()
        };
        let e = virtio_layout(&devices).unwrap_err();
        assert!(e.to_string().contains("13"), "{e}");
    }

    #[test]
    fn test_build_backends_refuses_a_missing_tap_as_bad_input() {
        let devices = DeviceConfig {
            nets: vec![NetConfig {
                tap: "vmmnotap0x7e".into(),
                mac: None,
            }],
            ..Default::default()
        };
        let e = build_backends(&devices).err().unwrap();
        assert_eq!(e.class(), crate::ErrorClass::BadInput, "{e}");
        assert!(e.to_string().contains("'vmmnotap0x7e'"), "{e}");
        // A tap name that cannot be an interface name.
        let devices = DeviceConfig {
            nets: vec![NetConfig {
                tap: "a-name-of-twenty-b".into(),
                mac: None,
            }],
            ..Default::default()
        };
        let e = build_backends(&devices).err().unwrap();
        assert_eq!(e.class(), crate::ErrorClass::BadInput);
        assert!(e.to_string().contains("1 to 15 bytes"), "{e}");
    }

    /// A temporary image of `sectors` sectors, removed on drop.
    struct Image(std::path::PathBuf);

    impl Image {
        fn new(tag: &str, sectors: usize) -> Self {
            let path = std::env::temp_dir()
                .join(format!("vmm-core-virtio-{tag}-{}.img", std::process::id()));
            std::fs::write(&path, vec![0u8; sectors * 512]).unwrap();
            Image(path)
        }
    }

    impl Drop for Image {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn disk(path: &std::path::Path, read_only: bool) -> DiskConfig {
        DiskConfig {
            path: path.to_path_buf(),
            read_only,
            serial: Some("s".into()),
        }
    }

    #[test]
    fn test_build_backends_opens_disks_in_order() {
        let (a, b) = (Image::new("a", 4), Image::new("b", 8));
        let devices = DeviceConfig {
            disks: vec![disk(&a.0, false), disk(&b.0, true)],
            rng: true,
            ..Default::default()
        };
        let backends = build_backends(&devices).unwrap().devices;
        let types: Vec<_> = backends.iter().map(|b| b.device_type()).collect();
        assert_eq!(types, [VIRTIO_ID_BLOCK, VIRTIO_ID_BLOCK, VIRTIO_ID_RNG]);
        // Capacity is the first config field; the second disk is read-only.
        let cap =
            |i: usize| u64::from_le_bytes(backends[i].config_space()[..8].try_into().unwrap());
        assert_eq!((cap(0), cap(1)), (4, 8));
        let ro = 1 << virtio_bindings::virtio_blk::VIRTIO_BLK_F_RO;
        assert_eq!(backends[0].features() & ro, 0);
        assert_ne!(backends[1].features() & ro, 0);
    }

    #[test]
    fn test_build_backends_unusable_disk_is_bad_input_naming_it() {
        let a = Image::new("locked", 4);
        // The same image twice, writable: the second open finds it locked.
        let devices = DeviceConfig {
            disks: vec![disk(&a.0, false), disk(&a.0, false)],
            ..Default::default()
        };
        let e = build_backends(&devices).err().unwrap();
        assert!(matches!(e, VmmError::Disk(_)), "{e:?}");
        assert_eq!(e.class(), crate::error::ErrorClass::BadInput);
        assert!(e.to_string().contains(&a.0.display().to_string()), "{e}");
        let missing = DeviceConfig {
            disks: vec![disk(std::path::Path::new("/nonexistent/disk.img"), true)],
            ..Default::default()
        };
        let e = build_backends(&missing).err().unwrap();
        assert_eq!(e.class(), crate::error::ErrorClass::BadInput);
        assert!(e.to_string().contains("/nonexistent/disk.img"), "{e}");
    }
}
