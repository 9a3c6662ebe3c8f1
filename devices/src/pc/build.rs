//! Builds a bus holding the devices of [`super::PC_DEVICES`].

use std::sync::Arc;
use std::time::Instant;

use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::state::PcDeviceStates;
use super::{DeviceDesc, DeviceSet, PcDevice};
use crate::legacy::{
    AcpiPm, Cmos, CmosMemorySizes, DebugCon, DebugExit, InstantClock, PostCodePort, SystemClock,
    Uart8250, I8042,
};
use crate::state::StateError;
use crate::timer::{Rearm, TimedDeviceLink};
use crate::{BusError, Console, IoBus, IrqLine, VmEventSink};

/// Where a device's interrupt lines come from. A KVM VMM registers an
/// irqfd per GSI; a VMM without an interrupt controller hands out
/// [`IrqLine::None`] ([`NoInterrupts`]).
pub trait InterruptLines {
    /// A line raising `gsi`.
    fn line(&mut self, gsi: u32) -> std::io::Result<IrqLine>;
}

/// Unconnected lines: polled guests, no interrupt controller.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoInterrupts;

impl InterruptLines for NoInterrupts {
    fn line(&mut self, _: u32) -> std::io::Result<IrqLine> {
        Ok(IrqLine::None)
    }
}

/// What the devices are connected to.
pub struct DeviceSetOptions {
    /// Which rows.
    pub set: DeviceSet,
    /// Where the UART and the debug console write.
    pub console: Console,
    /// Who ends the VM when debug-exit, the i8042 reset line or ACPI S5 asks.
    pub events: Arc<dyn VmEventSink>,
    /// RAM sizes the CMOS reports as firmware would store them.
    pub memory: CmosMemorySizes,
    /// Print POST codes to stderr as they arrive.
    pub print_post_codes: bool,
    /// The host feeds the UART's receive side: the UART gets an eventfd it
    /// writes when the guest empties its receive FIFO (flow control).
    pub uart_input: bool,
}

/// The devices on their bus, and the handles a VMM keeps to them.
pub struct BuiltDevices {
    /// The bus, ready for an exit dispatcher.
    pub bus: IoBus,
    /// The COM1 UART, to feed host input to.
    pub uart: Arc<Uart8250<IrqLine>>,
    /// With [`DeviceSetOptions::uart_input`]: written when the guest has
    /// drained the UART's receive FIFO.
    pub uart_rx_drained: Option<EventFd>,
    /// The POST-code port, for its history.
    pub post: Arc<PostCodePort>,
    /// The console the UART and the debug console write to (its byte
    /// count tells whether the guest has said anything).
    pub console: Console,
    /// Devices with time-driven interrupts (the RTC, the ACPI PM timer's
    /// carry) for the VMM's main loop to service on a timer.
    pub timed: Vec<TimedDeviceLink>,
    /// Every device with state, for snapshots.
    pub handles: DeviceHandles,
}

/// The devices of a set that hold state, kept by a VMM to snapshot them
/// ([`DeviceHandles::state`]); the PC-only ones are `None` on the minimal
/// set.
#[derive(Clone)]
pub struct DeviceHandles {
    /// Which rows were built.
    pub set: DeviceSet,
    /// COM1.
    pub uart: Arc<Uart8250<IrqLine>>,
    /// The POST-code port.
    pub post: Arc<PostCodePort>,
    /// The keyboard controller, when the set has one: the host injects key
    /// presses through it (Ctrl+Alt+Del from a control API).
    pub i8042: Option<Arc<I8042<IrqLine>>>,
    /// The RTC/CMOS.
    pub cmos: Option<Arc<Cmos>>,
    /// The ACPI PM block.
    pub acpi_pm: Option<Arc<AcpiPm>>,
}

/// Errors building the device set.
#[derive(Debug, thiserror::Error)]
pub enum DeviceSetError {
    /// An interrupt line could not be made.
    #[error("connecting {device}'s interrupt (GSI {gsi}) failed: {source}")]
    Interrupt {
        /// The device's bus name.
        device: &'static str,
        /// The GSI.
        gsi: u32,
        /// The error.
        source: std::io::Error,
    },
    /// An eventfd could not be created.
    #[error("creating an eventfd for {device} failed: {source}")]
    EventFd {
        /// The device's bus name.
        device: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A device could not be placed on the bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A device's saved state is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The saved states are for another device set.
    #[error(
        "the saved device states are for the {saved:?} device set, the VM has the {built:?} set"
    )]
    WrongSet {
        /// The set the states describe.
        saved: DeviceSet,
        /// The set being built.
        built: DeviceSet,
    },
}

/// Builds every device of `options.set` and registers it at the ports its
/// row in [`super::PC_DEVICES`] names.
pub fn build_devices(
    options: DeviceSetOptions,
    irqs: &mut dyn InterruptLines,
) -> Result<BuiltDevices, DeviceSetError> {
    build(options, irqs, None)
}

/// Like [`build_devices`], with every stateful device rebuilt from
/// `states` (a snapshot's): the states must be for `options.set`.
pub fn build_devices_from_state(
    options: DeviceSetOptions,
    irqs: &mut dyn InterruptLines,
    states: &PcDeviceStates,
) -> Result<BuiltDevices, DeviceSetError> {
    if states.set != options.set {
        return Err(DeviceSetError::WrongSet {
            saved: states.set,
            built: options.set,
        });
    }
    build(options, irqs, Some(states))
}

/// A state the set needs but the snapshot lacks.
fn missing(field: &'static str) -> DeviceSetError {
    DeviceSetError::State(StateError::Invalid {
        device: "the PC device set",
        field,
        value: 0,
        why: "the saved states have none for a device of this set",
    })
}

fn build(
    options: DeviceSetOptions,
    irqs: &mut dyn InterruptLines,
    states: Option<&PcDeviceStates>,
) -> Result<BuiltDevices, DeviceSetError> {
    let mut bus = IoBus::new();
    // COM1 and the POST port are made up front: the VMM keeps handles to
    // them whichever rows the set has.
    let com1 = super::device(PcDevice::Com1);
    let uart_irq = match com1.gsis.first() {
        Some(&gsi) if options.set.rows().any(|r| r.device == PcDevice::Com1) => {
            irqs.line(gsi).map_err(|source| DeviceSetError::Interrupt {
                device: com1.name,
                gsi,
                source,
            })?
        }
        _ => IrqLine::None,
    };
    let drained = if options.uart_input {
        let eventfd = |source| DeviceSetError::EventFd {
            device: com1.name,
            source,
        };
        let drained = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(eventfd)?;
        let notify = drained.try_clone().map_err(eventfd)?;
        Some((drained, notify))
    } else {
        None
    };
    let (drained, notify) = match drained {
        Some((d, n)) => (Some(d), Some(n)),
        None => (None, None),
    };
    let uart = match (states, notify) {
        (Some(st), notify) => {
            Uart8250::from_state(&st.uart, uart_irq, options.console.clone(), notify)?
        }
        (None, Some(notify)) => {
            Uart8250::with_rx_drained(uart_irq, options.console.clone(), notify)
        }
        (None, None) => Uart8250::new(uart_irq, options.console.clone()),
    };
    let uart = Arc::new(uart);
    let post = Arc::new(match states {
        Some(st) => PostCodePort::from_state(&st.post, Instant::now(), options.print_post_codes)?,
        None => PostCodePort::new(Instant::now(), options.print_post_codes),
    });
    let mut handles = DeviceHandles {
        set: options.set,
        uart: uart.clone(),
        post: post.clone(),
        i8042: None,
        cmos: None,
        acpi_pm: None,
    };
    let mut timed = Vec::new();
    let rearm_for = |device: &'static str| {
        Rearm::eventfd().map_err(|source| DeviceSetError::EventFd { device, source })
    };
    // The PM block is made before the RTC: the RTC's alarm sets its RTC_STS
    // and wakes the platform from S3 through it.
    let acpi = super::device(PcDevice::AcpiPm);
    let acpi_pm = if options.set.rows().any(|r| r.device == PcDevice::AcpiPm) {
        let gsi = acpi.gsis.first().copied().unwrap_or_default();
        let sci = irqs.line(gsi).map_err(|source| DeviceSetError::Interrupt {
            device: acpi.name,
            gsi,
            source,
        })?;
        let (rearm, watched) = rearm_for(acpi.name)?;
        let clock = Arc::new(InstantClock::new());
        let pm = match states {
            Some(st) => {
                let saved = st.acpi_pm.as_ref().ok_or_else(|| missing("acpi_pm"))?;
                AcpiPm::from_state(saved, options.events.clone(), clock)?
            }
            None => AcpiPm::new(options.events.clone(), clock),
        };
        let pm = Arc::new(pm.with_sci(sci, rearm));
        timed.push(TimedDeviceLink {
            name: acpi.name,
            device: pm.clone(),
            rearm: watched,
        });
        handles.acpi_pm = Some(pm.clone());
        Some(pm)
    } else {
        None
    };
    for row in options.set.rows() {
        let mut line = |i: usize| {
            let gsi = row.gsis.get(i).copied().unwrap_or_default();
            irqs.line(gsi).map_err(|source| DeviceSetError::Interrupt {
                device: row.name,
                gsi,
                source,
            })
        };
        let device: Arc<dyn DevicePio + Send + Sync> = match row.device {
            PcDevice::Com1 => uart.clone(),
            PcDevice::DebugExit => Arc::new(DebugExit::new(options.events.clone())),
            PcDevice::DebugCon => Arc::new(DebugCon::new(options.console.clone())),
            PcDevice::PostCode => post.clone(),
            PcDevice::I8042 => {
                let (kbd, aux) = (line(0)?, line(1)?);
                let dev = Arc::new(match states {
                    Some(st) => {
                        let saved = st.i8042.as_ref().ok_or_else(|| missing("i8042"))?;
                        I8042::from_state(saved, options.events.clone(), kbd, aux)?
                    }
                    None => I8042::new(options.events.clone(), kbd, aux),
                });
                handles.i8042 = Some(dev.clone());
                dev
            }
            PcDevice::RtcCmos => {
                let (rearm, watched) = rearm_for(row.name)?;
                let clock = Arc::new(SystemClock);
                let cmos = match states {
                    Some(st) => {
                        let saved = st.cmos.as_ref().ok_or_else(|| missing("cmos"))?;
                        Cmos::from_state(saved, clock)?
                    }
                    None => Cmos::new(options.memory, clock),
                };
                let mut rtc = cmos.with_interrupt(line(0)?, rearm);
                if let Some(pm) = &acpi_pm {
                    rtc = rtc.with_alarm_listener(pm.clone());
                }
                let rtc = Arc::new(rtc);
                timed.push(TimedDeviceLink {
                    name: row.name,
                    device: rtc.clone(),
                    rearm: watched,
                });
                handles.cmos = Some(rtc.clone());
                rtc
            }
            PcDevice::AcpiPm => match &acpi_pm {
                Some(pm) => pm.clone(),
                None => continue,
            },
        };
        register(&mut bus, row, device)?;
    }
    Ok(BuiltDevices {
        bus,
        uart,
        uart_rx_drained: drained,
        post,
        console: options.console.clone(),
        timed,
        handles,
    })
}

fn register(
    bus: &mut IoBus,
    row: &DeviceDesc,
    device: Arc<dyn DevicePio + Send + Sync>,
) -> Result<(), BusError> {
    for range in row.ports {
        bus.register_pio(row.name, PioAddress(range.base), range.len, device.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pc::PcDeviceStates;
    use crate::vm_event::RecordingSink;
    use crate::{Access, VmEvent};

    fn options(set: DeviceSet, console: Console, sink: Arc<RecordingSink>) -> DeviceSetOptions {
        DeviceSetOptions {
            set,
            console,
            events: sink,
            memory: CmosMemorySizes {
                below_4g_end: 64 << 20,
                above_4g_size: 0,
            },
            print_post_codes: false,
            uart_input: true,
        }
    }

    #[test]
    fn test_build_devices_pc_set_claims_every_row() {
        let console = Console::memory();
        let sink = Arc::new(RecordingSink::default());
        let built = build_devices(
            options(DeviceSet::Pc, console.clone(), sink.clone()),
            &mut NoInterrupts,
        )
        .unwrap();
        let mut b = [0u8; 1];
        for row in DeviceSet::Pc.rows() {
            for p in row.ports {
                assert_eq!(
                    built.bus.pio_read(PioAddress(p.base), &mut b),
                    Access::Claimed,
                    "{} at {:#x}",
                    row.name,
                    p.base
                );
            }
        }
        assert!(built.uart_rx_drained.is_some());
        built.bus.pio_write(PioAddress(0x3f8), b"4");
        built.bus.pio_write(PioAddress(0xe9), b"2");
        assert_eq!(console.captured(), b"42");
        built.bus.pio_write(PioAddress(0xf4), &[3]);
        built.bus.pio_write(PioAddress(0x80), &[0x55]);
        assert_eq!(sink.events(), vec![VmEvent::DebugExit(3)]);
        assert_eq!(built.post.codes().len(), 1);
        let kbd = built
            .handles
            .i8042
            .clone()
            .expect("the PC set has an i8042");
        assert!(kbd.key_press(&[0x14]));
        let mut b = [0u8; 1];
        built.bus.pio_read(PioAddress(0x60), &mut b);
        // Set 2 0x14 (left Ctrl) through the default translation: set 1 0x1d.
        assert_eq!(b[0], 0x1d);
        let timed: Vec<_> = built.timed.iter().map(|t| t.name).collect();
        assert_eq!(timed, ["acpi-pm", "rtc-cmos"]);
    }

    #[test]
    fn test_build_devices_rtc_alarm_wakes_the_pm_block_from_s3() {
        let sink = Arc::new(RecordingSink::default());
        let built = build_devices(
            options(DeviceSet::Pc, Console::discard(), sink.clone()),
            &mut NoInterrupts,
        )
        .unwrap();
        let out = |port: u16, v: &[u8]| built.bus.pio_write(PioAddress(port), v);
        // RTC_EN, alarm at every second with AIE, then S3.
        out(0x602, &0x0400u16.to_le_bytes());
        for index in [1u8, 3, 5] {
            out(0x70, &[index]);
            out(0x71, &[0xc0]);
        }
        out(0x70, &[0x0b]);
        out(0x71, &[0x22]);
        out(0x604, &0x2400u16.to_le_bytes());
        assert_eq!(sink.events(), vec![VmEvent::Suspend]);
        // The main loop services the RTC until the alarm fires (within a
        // second of host time).
        let rtc = &built.timed[1];
        let start = Instant::now();
        while sink.events().len() < 2 && start.elapsed().as_secs() < 3 {
            match rtc.device.service() {
                Some(d) => std::thread::sleep(d),
                None => break,
            }
        }
        assert_eq!(sink.events(), vec![VmEvent::Suspend, VmEvent::Wake]);
        let mut sts = [0u8; 2];
        built.bus.pio_read(PioAddress(0x600), &mut sts);
        assert_eq!(u16::from_le_bytes(sts), 0x8400, "WAK_STS | RTC_STS");
        assert!(rtc.rearm.read().is_ok(), "enabling AIE re-armed the loop");
    }

    #[test]
    fn test_build_devices_minimal_set_leaves_pc_ports_unclaimed() {
        let sink = Arc::new(RecordingSink::default());
        let built = build_devices(
            options(DeviceSet::Minimal, Console::discard(), sink.clone()),
            &mut NoInterrupts,
        )
        .unwrap();
        let mut b = [0u8; 1];
        for port in [0x60, 0x64, 0x70, 0x600] {
            assert_eq!(
                built.bus.pio_read(PioAddress(port), &mut b),
                Access::Unclaimed
            );
        }
        // The reset command goes nowhere.
        built.bus.pio_write(PioAddress(0x64), &[0xfe]);
        assert!(sink.events().is_empty());
        assert!(built.handles.i8042.is_none());
    }

    #[test]
    fn test_build_devices_from_state_restores_every_stateful_device() {
        let sink = Arc::new(RecordingSink::default());
        let built = build_devices(
            options(DeviceSet::Pc, Console::discard(), sink.clone()),
            &mut NoInterrupts,
        )
        .unwrap();
        built.bus.pio_write(PioAddress(0x3ff), &[0x42]); // UART scratch
        built.bus.pio_write(PioAddress(0x70), &[0x41]); // CMOS index 0x41
        built.bus.pio_write(PioAddress(0x71), &[0x99]);
        built.bus.pio_write(PioAddress(0x80), &[0x12]);
        let states = built.handles.state();
        let json = serde_json::to_string(&states).unwrap();
        let states: PcDeviceStates = serde_json::from_str(&json).unwrap();
        let again = build_devices_from_state(
            options(DeviceSet::Pc, Console::discard(), sink.clone()),
            &mut NoInterrupts,
            &states,
        )
        .unwrap();
        let mut b = [0u8];
        again.bus.pio_read(PioAddress(0x3ff), &mut b);
        assert_eq!(b[0], 0x42);
        again.bus.pio_write(PioAddress(0x70), &[0x41]);
        again.bus.pio_read(PioAddress(0x71), &mut b);
        assert_eq!(b[0], 0x99);
        assert_eq!(again.post.total(), 1);
        assert!(again.uart_rx_drained.is_some());
        // States of the PC set do not fit the minimal one.
        let e = build_devices_from_state(
            options(DeviceSet::Minimal, Console::discard(), sink),
            &mut NoInterrupts,
            &states,
        )
        .err()
        .unwrap();
        assert!(matches!(e, DeviceSetError::WrongSet { .. }), "{e}");
    }

    struct FailingLines;
    impl InterruptLines for FailingLines {
        fn line(&mut self, gsi: u32) -> std::io::Result<IrqLine> {
            if gsi == 12 {
                Err(std::io::Error::from_raw_os_error(libc_enospc()))
            } else {
                Ok(IrqLine::None)
            }
        }
    }

    fn libc_enospc() -> i32 {
        28
    }

    #[test]
    fn test_build_devices_interrupt_failure_names_device_and_gsi() {
        let sink = Arc::new(RecordingSink::default());
        let e = build_devices(
            options(DeviceSet::Pc, Console::discard(), sink),
            &mut FailingLines,
        )
        .err()
        .unwrap();
        let msg = e.to_string();
        assert!(msg.contains("i8042") && msg.contains("GSI 12"), "{msg}");
    }
}
