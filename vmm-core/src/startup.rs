//! Where start-up time goes: the phases from the VMM's start (see
//! [`crate::HostOptions::started_at`]) to vCPU 0's first `KVM_RUN`, for
//! `--stats` and the metrics file.
//!
//! The main thread records a mark at the end of each phase it runs;
//! vCPU 0's thread records the moment it first calls `KVM_RUN`. Phases are
//! consecutive intervals of one timeline, so they add up to the total,
//! except `seccomp`, which is the main thread's own time compiling and
//! loading filters inside the `threads` interval (the vCPU threads load
//! theirs in parallel, before the gate that `first entry` starts at).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One phase of start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupPhase {
    /// The front end: from the VMM's start to `Vm::create` (arguments,
    /// logger, signal handlers, console and host resources).
    Parse,
    /// Laying out and mapping guest RAM.
    Memory,
    /// Reading and loading the image and its boot structures.
    Load,
    /// `/dev/kvm`, the VM, memory slots, irqchip, vCPUs with CPUID, MSRs
    /// and boot state, firmware tables.
    KvmSetup,
    /// From `Vm::create`'s return to `Vm::run`: building and attaching
    /// the device set.
    Devices,
    /// The main thread compiling and loading seccomp filters.
    Seccomp,
    /// The rest of `Vm::run` until every thread is ready: the event loop,
    /// vCPU and device threads, each confining itself.
    Threads,
    /// From the gate opening to vCPU 0 calling `KVM_RUN`.
    FirstEntry,
}

impl StartupPhase {
    /// Every phase, in timeline order.
    pub const ALL: [StartupPhase; 8] = [
        StartupPhase::Parse,
        StartupPhase::Memory,
        StartupPhase::Load,
        StartupPhase::KvmSetup,
        StartupPhase::Devices,
        StartupPhase::Seccomp,
        StartupPhase::Threads,
        StartupPhase::FirstEntry,
    ];

    /// The phase's name in reports (snake case, as in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            StartupPhase::Parse => "parse",
            StartupPhase::Memory => "memory",
            StartupPhase::Load => "load",
            StartupPhase::KvmSetup => "kvm_setup",
            StartupPhase::Devices => "devices",
            StartupPhase::Seccomp => "seccomp",
            StartupPhase::Threads => "threads",
            StartupPhase::FirstEntry => "first_entry",
        }
    }
}

/// The phases a run measured, in timeline order (a phase whose marks are
/// missing, such as the creation phases of a restored VM, is left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupTimes {
    /// Each measured phase and its duration.
    pub phases: Vec<(StartupPhase, Duration)>,
}

impl StartupTimes {
    /// The duration of `phase`, if it was measured.
    pub fn get(&self, phase: StartupPhase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }
}

/// The marks, as the main thread and vCPU 0 record them.
#[derive(Debug, Default)]
pub(crate) struct StartupMarks {
    origin: Option<Instant>,
    create_entered: Option<Instant>,
    memory: Option<Instant>,
    load: Option<Instant>,
    created: Option<Instant>,
    run_entered: Option<Instant>,
    seccomp: Duration,
    gate_open: Option<Instant>,
    /// Set once, by vCPU 0's thread.
    first_entry: Arc<OnceLock<Instant>>,
}

/// Which mark [`StartupMarks::mark`] sets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mark {
    CreateEntered,
    Memory,
    Load,
    Created,
    RunEntered,
    GateOpen,
}

impl StartupMarks {
    /// Marks measured from `origin` (the VMM's start), if known.
    pub(crate) fn new(origin: Option<Instant>) -> Self {
        StartupMarks {
            origin,
            ..Default::default()
        }
    }

    /// Records the end of a phase now.
    pub(crate) fn mark(&mut self, mark: Mark) {
        let now = Some(Instant::now());
        match mark {
            Mark::CreateEntered => self.create_entered = now,
            Mark::Memory => self.memory = now,
            Mark::Load => self.load = now,
            Mark::Created => self.created = now,
            Mark::RunEntered => self.run_entered = now,
            Mark::GateOpen => self.gate_open = now,
        }
    }

    /// Runs `f`, counting its time as seccomp work of the main thread.
    pub(crate) fn seccomp<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.seccomp += t.elapsed();
        out
    }

    /// What vCPU 0's thread sets when it first calls `KVM_RUN`.
    pub(crate) fn first_entry(&self) -> Arc<OnceLock<Instant>> {
        self.first_entry.clone()
    }

    /// The phases measured so far.
    pub(crate) fn times(&self) -> StartupTimes {
        let first = self.first_entry.get().copied();
        // Seccomp is inside the run-entered-to-gate interval.
        let threads =
            span(self.run_entered, self.gate_open).map(|d| d.saturating_sub(self.seccomp));
        let seccomp = self.run_entered.and(self.gate_open).map(|_| self.seccomp);
        let phases = [
            (StartupPhase::Parse, span(self.origin, self.create_entered)),
            (StartupPhase::Memory, span(self.create_entered, self.memory)),
            (StartupPhase::Load, span(self.memory, self.load)),
            (StartupPhase::KvmSetup, span(self.load, self.created)),
            (StartupPhase::Devices, span(self.created, self.run_entered)),
            (StartupPhase::Seccomp, seccomp),
            (StartupPhase::Threads, threads),
            (StartupPhase::FirstEntry, span(self.gate_open, first)),
        ];
        StartupTimes {
            phases: phases
                .into_iter()
                .filter_map(|(p, d)| d.map(|d| (p, d)))
                .collect(),
        }
    }
}

fn span(from: Option<Instant>, to: Option<Instant>) -> Option<Duration> {
    Some(to?.saturating_duration_since(from?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_startup_marks_give_consecutive_phases() {
        let origin = Instant::now();
        let mut m = StartupMarks::new(Some(origin));
        for mark in [
            Mark::CreateEntered,
            Mark::Memory,
            Mark::Load,
            Mark::Created,
            Mark::RunEntered,
        ] {
            std::thread::sleep(Duration::from_millis(1));
            m.mark(mark);
        }
        m.seccomp(|| std::thread::sleep(Duration::from_millis(2)));
        std::thread::sleep(Duration::from_millis(1));
        m.mark(Mark::GateOpen);
        assert_eq!(m.times().get(StartupPhase::FirstEntry), None);
        std::thread::sleep(Duration::from_millis(1));
        let _ = m.first_entry().set(Instant::now());
        let t = m.times();
        let names: Vec<_> = t.phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, StartupPhase::ALL);
        for (p, d) in &t.phases {
            assert!(*d >= Duration::from_millis(1), "{p:?} {d:?}");
        }
        assert!(t.get(StartupPhase::Seccomp).unwrap() >= Duration::from_millis(2));
        // Seccomp is carved out of the threads interval: the sum is the
        // time from the origin to the first entry.
        let total: Duration = t.phases.iter().map(|(_, d)| *d).sum();
        let first = *m.first_entry().get().unwrap();
        assert_eq!(total, first - origin);
    }

    #[test]
    fn test_startup_marks_leave_out_unmeasured_phases() {
        // A restored VM: no creation marks, no origin.
        let mut m = StartupMarks::new(None);
        m.mark(Mark::RunEntered);
        m.mark(Mark::GateOpen);
        let names: Vec<_> = m.times().phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, [StartupPhase::Seccomp, StartupPhase::Threads]);
    }
}
