//! Exits per kind over time, for a picture of a run (`--exit-plot`).
//!
//! [`ExitTimeline`] counts each exit in one of [`BUCKETS`] time buckets per
//! exit kind, as relaxed atomics on the exit path. Buckets are a power of
//! two nanoseconds wide, starting at [`FIRST_BUCKET_SHIFT`] (about 1 us);
//! when an exit falls beyond the last bucket, neighbouring pairs are merged
//! and the width doubles, as often as needed. So memory is fixed (12 kinds
//! x 1024 buckets x 8 bytes) for a run of any length, and the resolution is
//! always at least 1/1024 of the run so far. The timeline also records
//! named start-up phases (image loaded, VM created, guest entered...).
//!
//! It exists only when asked for: the exit dispatcher holds it in an
//! `Option`, checked once per exit together with `--explain`.
//!
//! An exit recorded by one vCPU while another merges buckets may land one
//! bucket off; no exit is ever lost (merging moves counts with `swap`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmm_cpu::ExitKind;

use crate::lock;

/// Buckets per exit kind.
pub const BUCKETS: usize = 1024;

/// The first bucket width is `1 << FIRST_BUCKET_SHIFT` ns (1.024 us).
pub const FIRST_BUCKET_SHIFT: u32 = 10;

const KINDS: usize = ExitKind::ALL.len();

/// Live per-kind, per-time-bucket exit counters.
pub struct ExitTimeline {
    origin: Instant,
    /// log2 of the bucket width in ns.
    shift: AtomicU32,
    /// `KINDS * BUCKETS` counters, kind-major.
    counts: Box<[AtomicU64]>,
    /// Serialises merging.
    grow: Mutex<()>,
    phases: Mutex<Vec<(String, Duration)>>,
}

/// A timeline's contents at one moment, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSnapshot {
    /// Width of one bucket.
    pub bucket: Duration,
    /// For every kind with at least one exit, in [`ExitKind::ALL`] order:
    /// its counts, bucket 0 starting at the timeline's origin (when the VMM
    /// started). All vectors have the same length, up to the last bucket
    /// with an exit or a phase.
    pub series: Vec<(ExitKind, Vec<u64>)>,
    /// Named moments, in the order they were recorded, since the origin.
    pub phases: Vec<(String, Duration)>,
}

impl TimelineSnapshot {
    /// Exits in all.
    pub fn total(&self) -> u64 {
        self.series.iter().flat_map(|(_, c)| c.iter()).sum()
    }

    /// The time the snapshot spans: its buckets, or the last phase if later.
    pub fn span(&self) -> Duration {
        let buckets = self.series.first().map_or(0, |(_, c)| c.len()) as u32;
        let phases = self
            .phases
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or_default();
        (self.bucket * buckets).max(phases)
    }
}

impl ExitTimeline {
    /// An empty timeline whose time 0 is `origin` (normally when the VMM
    /// started).
    pub fn new(origin: Instant) -> Self {
        ExitTimeline {
            origin,
            shift: AtomicU32::new(FIRST_BUCKET_SHIFT),
            counts: (0..KINDS * BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            grow: Mutex::new(()),
            phases: Mutex::new(Vec::new()),
        }
    }

    /// Counts one exit of `kind` at `at`.
    pub fn record(&self, kind: ExitKind, at: Instant) {
        let ns = nanos(at.saturating_duration_since(self.origin));
        loop {
            let shift = self.shift.load(Ordering::Relaxed);
            let bucket = (ns >> shift) as usize;
            if bucket < BUCKETS {
                self.counts[kind.index() * BUCKETS + bucket].fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.widen(shift, ns);
        }
    }

    /// Records that phase `name` was reached now.
    pub fn phase(&self, name: &str) {
        let at = self.origin.elapsed();
        lock(&self.phases).push((name.to_string(), at));
    }

    /// Doubles the bucket width until `ns` fits, unless another thread
    /// already changed it from `seen`.
    fn widen(&self, seen: u32, ns: u64) {
        let _guard = lock(&self.grow);
        let mut shift = self.shift.load(Ordering::Relaxed);
        if shift != seen {
            return;
        }
        // ns >> 63 is at most 1, so this ends.
        while (ns >> shift) as usize >= BUCKETS {
            for kind in 0..KINDS {
                let c = &self.counts[kind * BUCKETS..(kind + 1) * BUCKETS];
                // Target i was drained at step i / 2 (or just now, for 0).
                for i in 0..BUCKETS / 2 {
                    let merged = c[2 * i].swap(0, Ordering::Relaxed)
                        + c[2 * i + 1].swap(0, Ordering::Relaxed);
                    c[i].fetch_add(merged, Ordering::Relaxed);
                }
            }
            shift += 1;
        }
        self.shift.store(shift, Ordering::Relaxed);
    }

    /// What the timeline holds now.
    pub fn snapshot(&self) -> TimelineSnapshot {
        let shift = self.shift.load(Ordering::Relaxed);
        let bucket = Duration::from_nanos(1 << shift);
        let phases = lock(&self.phases).clone();
        let mut series = Vec::new();
        for kind in ExitKind::ALL {
            let c = &self.counts[kind.index() * BUCKETS..(kind.index() + 1) * BUCKETS];
            let counts: Vec<u64> = c.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            if counts.iter().any(|n| *n > 0) {
                series.push((kind, counts));
            }
        }
        // Trim to the last bucket anything happened in.
        let last_exit = series
            .iter()
            .filter_map(|(_, c)| c.iter().rposition(|n| *n > 0))
            .max()
            .map_or(0, |i| i + 1);
        let last_phase = phases
            .iter()
            .map(|(_, t)| (nanos(*t) >> shift) as usize + 1)
            .max()
            .unwrap_or(0);
        let len = last_exit.max(last_phase.min(BUCKETS)).max(1);
        for (_, c) in &mut series {
            c.truncate(len);
        }
        TimelineSnapshot {
            bucket,
            series,
            phases,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_timeline_counts_in_first_buckets() {
        let t0 = Instant::now();
        let t = ExitTimeline::new(t0);
        t.record(ExitKind::IoOut, t0 + Duration::from_nanos(100));
        t.record(ExitKind::IoOut, t0 + Duration::from_nanos(2500));
        t.record(ExitKind::Hlt, t0 + Duration::from_nanos(2900));
        let s = t.snapshot();
        assert_eq!(s.bucket, Duration::from_nanos(1024));
        assert_eq!(s.series.len(), 2);
        assert_eq!(s.series[0], (ExitKind::IoOut, vec![1, 0, 1]));
        assert_eq!(s.series[1], (ExitKind::Hlt, vec![0, 0, 1]));
        assert_eq!(s.total(), 3);
    }

    #[test]
    fn test_timeline_widens_without_losing_exits() {
        let t0 = Instant::now();
        let t = ExitTimeline::new(t0);
        // One exit every 50 us for 100 s of simulated time: 2 million.
        let n = 2_000_000u64;
        for i in 0..n {
            t.record(ExitKind::IoOut, t0 + Duration::from_micros(50 * i));
        }
        t.record(ExitKind::Hlt, t0 + Duration::from_secs(100));
        let s = t.snapshot();
        assert_eq!(s.total(), n + 1);
        // 100 s in at most 1024 buckets: 2^27 ns (134 ms) each.
        assert_eq!(s.bucket, Duration::from_nanos(1 << 27));
        assert!(s.series[0].1.len() <= BUCKETS);
        // Evenly spread: full buckets hold 2^27 / 50000 exits, give or take one.
        let full = s.series[0].1[10];
        assert!((2684..=2685).contains(&full), "{full}");
        assert!(s.span() >= Duration::from_secs(100));
    }

    #[test]
    fn test_timeline_phases_extend_the_span() {
        let t = ExitTimeline::new(Instant::now());
        t.phase("guest entered");
        let s = t.snapshot();
        assert!(s.series.is_empty());
        assert_eq!(s.phases.len(), 1);
        assert_eq!(s.phases[0].0, "guest entered");
    }
}
