//! The `--stats` report: exits per kind, accesses per port / MMIO range, and
//! where the time went (inside KVM_RUN versus handling exits).

use std::fmt;
use std::time::Duration;

use vmm_cpu::{ExitKind, VcpuStats};
use vmm_devices::bus::{AccessRow, BusKey};

/// Statistics of one VM run.
#[derive(Debug, Clone, Default)]
pub struct VmStats {
    /// Exits per kind (all vCPUs).
    pub exits_by_kind: Vec<(ExitKind, u64)>,
    /// Bus access counters.
    pub bus: Vec<AccessRow>,
    /// Per-vCPU loop statistics, by vCPU index.
    pub vcpus: Vec<(u64, VcpuStats)>,
    /// Wall time from the start of `run` to the end.
    pub wall: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for VmStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exits by kind:")?;
        for (kind, n) in self.exits_by_kind.iter().filter(|(_, n)| *n > 0) {
            writeln!(f, "  {:<16} {n}", kind.name())?;
        }
        writeln!(f, "accesses by port / MMIO range:")?;
        for row in &self.bus {
            let key = match row.key {
                BusKey::Port(p) => format!("pio {p:#06x}"),
                BusKey::Mmio(a) => format!("mmio {a:#x}"),
                BusKey::UnclaimedMmioPage(a) => format!("mmio page {a:#x}"),
                BusKey::UnclaimedMmioOther => "mmio other pages".to_string(),
            };
            let c = row.count;
            writeln!(
                f,
                "  {key:<22} {:<10} reads={} writes={} unclaimed_reads={} unclaimed_writes={}",
                row.device.as_deref().unwrap_or("-"),
                c.reads,
                c.writes,
                c.unclaimed_reads,
                c.unclaimed_writes
            )?;
        }
        writeln!(f, "time:")?;
        for (i, v) in &self.vcpus {
            writeln!(
                f,
                "  vcpu {i}: exits={} in_kvm_run={:.3}ms handling_exits={:.3}ms",
                v.exits,
                ms(v.run_time),
                ms(v.handle_time)
            )?;
        }
        write!(f, "  wall={:.3}ms", ms(self.wall))
    }
}
