//! Lock-free per-vCPU metrics: exit counts, time inside KVM_RUN versus
//! handling exits, and a latency histogram per exit kind. Written by the
//! vCPU thread on every exit (relaxed atomics, no locks), readable at any
//! moment from another thread for periodic reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::exit_handler::ExitKind;

/// Sub-buckets per power of two: 8 gives at most 12.5% relative error.
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
/// Buckets covering 0 ns to 2^64 ns.
const BUCKETS: usize = 64 * SUBS;

/// A log-linear histogram of durations in nanoseconds (the HDR idea with
/// 3 significant bits), updated with relaxed atomics.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUBS as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUBS - 1);
    ((exp - SUB_BITS + 1) as usize) * SUBS + sub
}

/// The largest value that falls in bucket `i` (what percentiles report).
fn bucket_upper(i: usize) -> u64 {
    if i < SUBS {
        return i as u64;
    }
    let exp = (i / SUBS) as u32 + SUB_BITS - 1;
    let sub = (i % SUBS) as u64;
    let low = (1u64 << exp) | (sub << (exp - SUB_BITS));
    low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of a [`LatencyHistogram`]; snapshots of several
/// vCPUs can be merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencySnapshot {
    buckets: Vec<u64>,
    /// Samples recorded.
    pub count: u64,
    /// Sum of all samples, ns.
    pub sum_ns: u64,
    /// Largest sample, ns (exact).
    pub max_ns: u64,
}

impl LatencySnapshot {
    /// Adds `other`'s samples to this one.
    pub fn merge(&mut self, other: &LatencySnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The `q`-quantile (0.0-1.0) in ns, as the upper bound of its bucket
    /// (never above the exact maximum); 0 with no samples.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// Metrics of one vCPU.
#[derive(Default)]
pub struct VcpuMetrics {
    exits: AtomicU64,
    run_ns: AtomicU64,
    handle_ns: AtomicU64,
    latency: [LatencyHistogram; ExitKind::ALL.len()],
}

impl VcpuMetrics {
    pub(crate) fn record_run(&self, d: Duration) {
        self.run_ns.fetch_add(nanos(d), Ordering::Relaxed);
    }

    pub(crate) fn record_exit(&self, kind: ExitKind, handling: Duration) {
        self.exits.fetch_add(1, Ordering::Relaxed);
        self.handle_ns.fetch_add(nanos(handling), Ordering::Relaxed);
        self.latency[kind.index()].record(handling);
    }

    /// Exits handled so far.
    pub fn exits(&self) -> u64 {
        self.exits.load(Ordering::Relaxed)
    }

    /// Time inside KVM_RUN so far.
    pub fn run_time(&self) -> Duration {
        Duration::from_nanos(self.run_ns.load(Ordering::Relaxed))
    }

    /// Time handling exits so far.
    pub fn handle_time(&self) -> Duration {
        Duration::from_nanos(self.handle_ns.load(Ordering::Relaxed))
    }

    /// Handling-latency snapshot for one exit kind.
    pub fn latency(&self, kind: ExitKind) -> LatencySnapshot {
        self.latency[kind.index()].snapshot()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            12_345,
            1 << 40,
            u64::MAX,
        ] {
            let b = bucket_of(ns);
            assert!(b >= last, "bucket order at {ns}");
            last = b;
            let up = bucket_upper(b);
            assert!(up >= ns, "{ns} above its bucket's upper bound {up}");
            assert!(up - ns <= ns / 8 + 1, "bucket too wide at {ns}: {up}");
        }
    }

    #[test]
    fn test_quantiles_and_merge() {
        let h = LatencyHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.max_ns, 100_000);
        let p50 = s.quantile_ns(0.5);
        assert!((50_000..=57_000).contains(&p50), "p50 {p50}");
        let p99 = s.quantile_ns(0.99);
        assert!((99_000..=100_000).contains(&p99), "p99 {p99}");
        let mut m = LatencySnapshot::default();
        m.merge(&s);
        m.merge(&s);
        assert_eq!((m.count, m.max_ns), (200, 100_000));
        assert_eq!(m.quantile_ns(0.5), p50);
        assert_eq!(LatencySnapshot::default().quantile_ns(0.99), 0);
    }
}
