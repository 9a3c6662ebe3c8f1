//! Builds a bus holding the devices of [`super::PC_DEVICES`].

use std::sync::Arc;
use std::time::Instant;

use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::{DeviceDesc, DeviceSet, PcDevice};
use crate::legacy::{
    AcpiPm, Cmos, CmosMemorySizes, DebugCon, DebugExit, InstantClock, PostCodePort, SystemClock,
    Uart8250, I8042,
};
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
}

/// Builds every device of `options.set` and registers it at the ports its
/// row in [`super::PC_DEVICES`] names.
pub fn build_devices(
    options: DeviceSetOptions,
    irqs: &mut dyn InterruptLines,
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
    let (uart, uart_rx_drained) = if options.uart_input {
        let eventfd = |source| DeviceSetError::EventFd {
            device: com1.name,
            source,
        };
        let drained = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(eventfd)?;
        let notify = drained.try_clone().map_err(eventfd)?;
        let uart = Uart8250::with_rx_drained(uart_irq, options.console.clone(), notify);
        (Arc::new(uart), Some(drained))
    } else {
        let uart = Uart8250::new(uart_irq, options.console.clone());
        (Arc::new(uart), None)
    };
    let post = Arc::new(PostCodePort::new(Instant::now(), options.print_post_codes));
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
            PcDevice::I8042 => Arc::new(I8042::new(options.events.clone(), line(0)?, line(1)?)),
            PcDevice::RtcCmos => Arc::new(Cmos::new(options.memory, Arc::new(SystemClock))),
            PcDevice::AcpiPm => Arc::new(AcpiPm::new(
                options.events.clone(),
                Arc::new(InstantClock::new()),
            )),
        };
        register(&mut bus, row, device)?;
    }
    Ok(BuiltDevices {
        bus,
        uart,
        uart_rx_drained,
        post,
        console: options.console.clone(),
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
