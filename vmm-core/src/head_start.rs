//! Starting a helper thread on another CPU than the busy thread that
//! creates it.
//!
//! Linux queues a new thread on its creator's CPU and moves it only when
//! the load balancer next runs, so a thread started by a thread that stays
//! busy (the main thread, in `KVM_CREATE_VM` and the memory and vCPU set-up
//! that follow) waits 1-3 ms on these machines before it first runs, even
//! with the other core idle: the work it was started for early runs after
//! the main thread's, not beside it. [`HeadStart`] moves the new thread to
//! the creator's other CPUs at once; the thread gives its CPU set back as
//! its first act ([`Started::release`]), so it is pinned only until it has
//! begun, and never while it runs guest code.
//!
//! The two steps race (the thread may begin before its creator pins it),
//! so a four-state atomic handshake decides: whoever comes first wins, and a
//! thread that began first is never pinned.

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Neither side has acted yet.
const FRESH: u8 = 0;
/// The thread began before its creator pinned it: it stays as it is.
const BEGAN: u8 = 1;
/// The creator is setting the thread's CPUs.
const PINNING: u8 = 2;
/// The creator has set them: the thread must give them back.
const PINNED: u8 = 3;

/// The creator's CPU set and the other CPUs in it.
pub(crate) struct HeadStart {
    all: libc::cpu_set_t,
    others: libc::cpu_set_t,
}

/// The new thread's side of the handshake.
pub(crate) struct Started {
    all: libc::cpu_set_t,
    state: Arc<AtomicU8>,
}

/// The creator's side of the handshake for one thread.
pub(crate) struct Pending {
    state: Arc<AtomicU8>,
}

impl HeadStart {
    /// The calling thread's CPUs; `None` if it may run on one CPU only
    /// (nowhere else to start) or its set cannot be read.
    pub(crate) fn here() -> Option<HeadStart> {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut all: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` is a valid cpu_set_t of the size passed.
        let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&all), &mut all) };
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if got != 0 || cpu < 0 {
            return None;
        }
        let mut others = all;
        let cpu = cpu as usize;
        // SAFETY: `others` is a valid set; the libc crate checks the
        // index against the set's size (one past it is ignored).
        if unsafe { libc::CPU_ISSET(cpu, &others) } {
            // SAFETY: as above.
            unsafe { libc::CPU_CLR(cpu, &mut others) };
        }
        // SAFETY: `others` is a valid set.
        if unsafe { libc::CPU_COUNT(&others) } == 0 {
            return None;
        }
        Some(HeadStart { all, others })
    }

    /// One thread's handshake: `Started` goes into the thread (it calls
    /// [`Started::release`] first), `Pending` stays with the creator (it
    /// calls [`Pending::pin`] once the thread exists).
    pub(crate) fn pair(&self) -> (Started, Pending) {
        let state = Arc::new(AtomicU8::new(FRESH));
        (
            Started {
                all: self.all,
                state: Arc::clone(&state),
            },
            Pending { state },
        )
    }

    /// Moves `thread` to the other CPUs unless it has already begun.
    pub(crate) fn pin<T>(&self, pending: Pending, thread: &JoinHandle<T>) {
        if pending
            .state
            .compare_exchange(FRESH, PINNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // SAFETY: the handle keeps the thread joinable, so its pthread_t
        // is valid; `others` is a valid set of the size passed. A failure
        // only loses the head start.
        unsafe {
            libc::pthread_setaffinity_np(
                thread.as_pthread_t(),
                std::mem::size_of_val(&self.others),
                &self.others,
            );
        }
        pending.state.store(PINNED, Ordering::Release);
    }
}

impl Started {
    /// Run first on the new thread: gives back the creator's CPU set if
    /// the creator pinned this thread (waiting for the call it may still be
    /// in), and makes sure it never will if not.
    pub(crate) fn release(self) {
        if self
            .state
            .compare_exchange(FRESH, BEGAN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        // Yield, not spin: this thread may have preempted its creator on
        // the creator's own CPU, mid-call.
        while self.state.load(Ordering::Acquire) != PINNED {
            std::thread::yield_now();
        }
        // SAFETY: `all` is a valid set of the size passed. A failure
        // leaves the thread on the other CPUs, which is still correct.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.all), &self.all) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> libc::cpu_set_t {
        // SAFETY: as in `HeadStart::here`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        assert_eq!(got, 0);
        set
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        // SAFETY: both are valid sets.
        unsafe { libc::CPU_EQUAL(a, b) }
    }

    #[test]
    fn test_head_start_thread_ends_with_the_creators_cpus() {
        let Some(head) = HeadStart::here() else {
            eprintln!("NOT TESTED ON THIS HOST: one CPU only, no other CPU to start on");
            return;
        };
        let creator = affinity();
        for _ in 0..50 {
            let (started, pending) = head.pair();
            let thread = std::thread::spawn(move || {
                started.release();
                affinity()
            });
            head.pin(pending, &thread);
            let seen = thread.join().unwrap();
            assert!(same(&seen, &creator), "a thread kept its head-start pin");
        }
    }

    #[test]
    fn test_head_start_thread_pinned_before_it_began_runs_elsewhere_first() {
        let Some(head) = HeadStart::here() else {
            eprintln!("NOT TESTED ON THIS HOST: one CPU only, no other CPU to start on");
            return;
        };
        let others = head.others;
        let (started, pending) = head.pair();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // Blocks until the creator has pinned: the pin must be seen.
            wait.recv().unwrap();
            let before = affinity();
            started.release();
            (before, affinity())
        });
        // The thread cannot have begun its handshake yet.
        head.pin(pending, &thread);
        go.send(()).unwrap();
        let (before, after) = thread.join().unwrap();
        assert!(same(&before, &others), "not pinned to the other CPUs");
        assert!(same(&after, &head.all), "CPUs not given back");
    }
}
