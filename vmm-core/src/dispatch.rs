//! The exit dispatcher: vmm-core's [`ExitHandler`]. Every port and MMIO exit
//! goes to the bus (no port is special-cased here), is traced if asked, and
//! every exit is counted by kind and against the exit budget. With
//! `--explain` or `--exit-plot` it also observes every exit (its `kvm_run`
//! fields, through [`ExitHandler::observe_exit`]); without them, that costs
//! one predictable branch per exit.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_device::bus::{MmioAddress, PioAddress};
use vmm_cpu::{ExitAction, ExitHandler, ExitKind, ExitRecord};
use vmm_devices::IoBus;

use crate::control::VmControl;
use crate::explain::Explainer;
use crate::timeline::ExitTimeline;
use crate::trace::{io_line, mmio_line, Dir};

/// Routes exits to the bus and applies the VM's stop conditions.
pub struct ExitDispatcher {
    bus: IoBus,
    control: Arc<VmControl>,
    trace_io: bool,
    by_kind: [AtomicU64; ExitKind::ALL.len()],
    /// Present only when some observer wants every exit.
    observer: Option<Observers>,
}

/// Who observes every exit.
struct Observers {
    explain: Option<Arc<Explainer>>,
    timeline: Option<Arc<ExitTimeline>>,
}

impl ExitDispatcher {
    /// A dispatcher over `bus`, stopping through `control`.
    pub fn new(bus: IoBus, control: Arc<VmControl>, trace_io: bool) -> Self {
        ExitDispatcher {
            bus,
            control,
            trace_io,
            by_kind: Default::default(),
            observer: None,
        }
    }

    /// Tells every exit to `explain` and counts it in `timeline` (either may
    /// be absent; with neither, exits are not observed at all).
    pub fn with_observers(
        mut self,
        explain: Option<Arc<Explainer>>,
        timeline: Option<Arc<ExitTimeline>>,
    ) -> Self {
        self.observer =
            (explain.is_some() || timeline.is_some()).then_some(Observers { explain, timeline });
        self
    }

    /// The bus, for its access counters.
    pub fn bus(&self) -> &IoBus {
        &self.bus
    }

    /// Exits seen per kind, in [`ExitKind::ALL`] order.
    pub fn exits_by_kind(&self) -> Vec<(ExitKind, u64)> {
        ExitKind::ALL
            .iter()
            .map(|k| (*k, self.by_kind[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    fn trace(&self, line: String) {
        // One write per line, so lines from two vCPUs never interleave.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl ExitHandler for ExitDispatcher {
    fn pio_read(&self, port: PioAddress, data: &mut [u8]) {
        self.bus.pio_read(port, data);
        if self.trace_io {
            self.trace(io_line(Dir::Read, port.0, data));
        }
    }

    fn pio_write(&self, port: PioAddress, data: &[u8]) {
        if self.trace_io {
            self.trace(io_line(Dir::Write, port.0, data));
        }
        self.bus.pio_write(port, data);
    }

    fn mmio_read(&self, addr: MmioAddress, data: &mut [u8]) {
        self.bus.mmio_read(addr, data);
        if self.trace_io {
            self.trace(mmio_line(Dir::Read, addr.0, data));
        }
    }

    fn mmio_write(&self, addr: MmioAddress, data: &[u8]) {
        if self.trace_io {
            self.trace(mmio_line(Dir::Write, addr.0, data));
        }
        self.bus.mmio_write(addr, data);
    }

    fn exit_handled(&self, kind: ExitKind) -> ExitAction {
        self.by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
        // Kicks are the VMM's doing, not the guest's, and exits that end the
        // vCPU need no budget.
        let counts = matches!(
            kind,
            ExitKind::IoIn | ExitKind::IoOut | ExitKind::MmioRead | ExitKind::MmioWrite
        );
        if (counts && self.control.count_exit()) || self.control.is_stopping() {
            ExitAction::Stop
        } else {
            ExitAction::Continue
        }
    }

    fn should_stop(&self) -> bool {
        // A pause also leaves the run loop; the vCPU thread then parks.
        self.control.is_stopping() || self.control.pause_wanted()
    }

    fn observes_exits(&self) -> bool {
        self.observer.is_some()
    }

    fn observe_exit(&self, exit: &ExitRecord<'_>) {
        if let Some(o) = &self.observer {
            if let Some(t) = &o.timeline {
                t.record(exit.kind, exit.at);
            }
            if let Some(e) = &o.explain {
                e.exit(exit, &self.bus);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::VmOutcome;

    #[test]
    fn test_dispatcher_counts_and_applies_exit_budget() {
        let control = Arc::new(VmControl::new(Some(2)));
        let d = ExitDispatcher::new(IoBus::new(), control.clone(), false);
        let mut b = [0u8; 1];
        d.pio_read(PioAddress(0x10), &mut b);
        assert_eq!(b[0], 0xff);
        assert_eq!(d.exit_handled(ExitKind::IoIn), ExitAction::Continue);
        assert_eq!(d.exit_handled(ExitKind::Interrupted), ExitAction::Continue);
        assert_eq!(d.exit_handled(ExitKind::IoOut), ExitAction::Stop);
        assert_eq!(control.outcome(), Some(VmOutcome::MaxExits { limit: 2 }));
        assert!(d.should_stop());
        let kinds = d.exits_by_kind();
        assert!(kinds.contains(&(ExitKind::IoIn, 1)));
        assert!(kinds.contains(&(ExitKind::Interrupted, 1)));
    }
}
