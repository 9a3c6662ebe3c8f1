//! The `--stats` report: exits per kind, accesses per port / MMIO range, and
//! where the time went (inside KVM_RUN versus handling exits).

use std::fmt;
use std::time::Duration;

use vmm_cpu::metrics::LatencySnapshot;
use vmm_cpu::{ExitKind, FallbackStat, VcpuStats};
use vmm_devices::bus::{AccessRow, BusKey};

use crate::startup::StartupTimes;

/// Statistics of one VM run.
#[derive(Debug, Clone, Default)]
pub struct VmStats {
    /// Exits per kind (all vCPUs).
    pub exits_by_kind: Vec<(ExitKind, u64)>,
    /// Bus access counters.
    pub bus: Vec<AccessRow>,
    /// Per-vCPU loop statistics, by vCPU index.
    pub vcpus: Vec<(u64, VcpuStats)>,
    /// Exit-handling latency per kind, all vCPUs merged (kinds seen only).
    pub latency: Vec<(ExitKind, LatencySnapshot)>,
    /// Instructions the emulation fallback finished or answered with an
    /// exception, per mnemonic (those handled at least once).
    pub emulation_fallback: Vec<FallbackStat>,
    /// Wall time from the start of `run` to the end.
    pub wall: Duration,
    /// From the VMM's start (see `VmBuilder::started_at`) to the moment the
    /// vCPUs were released into the guest.
    pub startup: Option<Duration>,
    /// Guest resets the VM rebooted from (see [`crate::reboot`]); the
    /// other figures are the current boot's.
    pub reboots: u64,
    /// Where the start-up time went, phase by phase.
    pub startup_phases: StartupTimes,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

impl VmStats {
    /// The same report as JSON (for `--metrics-file`): one object with
    /// `exits_by_kind`, `exit_latency_ns` (count, p50, p99, max per kind),
    /// `emulation_fallback` (per mnemonic: completed, ud, gp, ss, pf),
    /// `bus` rows, `vcpus`, `startup_ns`, `startup_phases_ns` (the
    /// measured [`crate::startup::StartupPhase`]s by name), `reboots` and
    /// `wall_ns`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"exits_by_kind\":{");
        let kinds: Vec<String> = self
            .exits_by_kind
            .iter()
            .map(|(k, n)| format!("\"{}\":{n}", k.name()))
            .collect();
        out += &kinds.join(",");
        out += "},\"exit_latency_ns\":{";
        let lat: Vec<String> = self
            .latency
            .iter()
            .map(|(k, l)| {
                format!(
                    "\"{}\":{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{}}}",
                    k.name(),
                    l.count,
                    l.quantile_ns(0.5),
                    l.quantile_ns(0.99),
                    l.max_ns
                )
            })
            .collect();
        out += &lat.join(",");
        out += "},\"emulation_fallback\":{";
        let fb: Vec<String> = self
            .emulation_fallback
            .iter()
            .map(|s| {
                format!(
                    "\"{}\":{{\"completed\":{},\"ud\":{},\"gp\":{},\"ss\":{},\"pf\":{}}}",
                    s.mnemonic, s.completed, s.ud, s.gp, s.ss, s.pf
                )
            })
            .collect();
        out += &fb.join(",");
        out += "},\"bus\":[";
        let rows: Vec<String> = self
            .bus
            .iter()
            .map(|r| {
                let (space, addr) = match r.key {
                    BusKey::Port(p) => ("pio", u64::from(p)),
                    BusKey::Mmio(a) => ("mmio", a),
                    BusKey::UnclaimedMmioPage(a) => ("mmio_page", a),
                    BusKey::UnclaimedMmioOther => ("mmio_other", 0),
                };
                format!(
                    "{{\"space\":\"{space}\",\"addr\":{addr},\"device\":{},\"reads\":{},\"writes\":{},\"unclaimed_reads\":{},\"unclaimed_writes\":{}}}",
                    r.device
                        .as_deref()
                        .map(json_string)
                        .unwrap_or_else(|| "null".into()),
                    r.count.reads,
                    r.count.writes,
                    r.count.unclaimed_reads,
                    r.count.unclaimed_writes
                )
            })
            .collect();
        out += &rows.join(",");
        out += "],\"vcpus\":[";
        let vcpus: Vec<String> = self
            .vcpus
            .iter()
            .map(|(i, v)| {
                format!(
                    "{{\"index\":{i},\"exits\":{},\"in_kvm_run_ns\":{},\"handling_ns\":{}}}",
                    v.exits,
                    v.run_time.as_nanos(),
                    v.handle_time.as_nanos()
                )
            })
            .collect();
        out += &vcpus.join(",");
        let startup = self
            .startup
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_else(|| "null".into());
        let phases: Vec<String> = self
            .startup_phases
            .phases
            .iter()
            .map(|(p, d)| format!("\"{}\":{}", p.name(), d.as_nanos()))
            .collect();
        out += &format!(
            "],\"startup_ns\":{startup},\"startup_phases_ns\":{{{}}},\"reboots\":{},\"wall_ns\":{}}}",
            phases.join(","),
            self.reboots,
            self.wall.as_nanos()
        );
        out
    }
}

/// A JSON string literal (device names are ours, but escape anyway).
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        writeln!(f, "exit handling latency (us):")?;
        for (kind, l) in &self.latency {
            writeln!(
                f,
                "  {:<16} count={} p50={:.2} p99={:.2} max={:.2}",
                kind.name(),
                l.count,
                us(l.quantile_ns(0.5)),
                us(l.quantile_ns(0.99)),
                us(l.max_ns)
            )?;
        }
        if !self.emulation_fallback.is_empty() {
            writeln!(
                f,
                "emulation fallback (instructions KVM could not emulate):"
            )?;
            for s in &self.emulation_fallback {
                writeln!(
                    f,
                    "  {:<16} completed={} #UD={} #GP={} #SS={} #PF={}",
                    s.mnemonic, s.completed, s.ud, s.gp, s.ss, s.pf
                )?;
            }
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
        if let Some(d) = self.startup {
            writeln!(f, "  startup (VMM start to guest entry)={:.3}ms", ms(d))?;
        }
        for (phase, d) in &self.startup_phases.phases {
            writeln!(f, "    {:<12} {:>8.3}ms", phase.name(), ms(*d))?;
        }
        if self.reboots > 0 {
            writeln!(
                f,
                "  reboots={} (the figures above are the last boot's)",
                self.reboots
            )?;
        }
        write!(f, "  wall={:.3}ms", ms(self.wall))
    }
}
