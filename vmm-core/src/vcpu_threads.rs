//! vCPU threads started while the VM is still being built.
//!
//! [`crate::Vm::create`] starts one thread per vCPU as soon as `/dev/kvm`
//! is open. Each runs an optional first task (vCPU 0's fetches what the
//! vCPU set-up needs from `/dev/kvm`: KVM_GET_SUPPORTED_CPUID, which
//! executes CPUID for every leaf in the host kernel and costs about 0.4 ms
//! on nested KVM), then confines itself with its seccomp filter, then
//! waits for its job: the run loop [`crate::Vm::run`] hands it, together
//! with its vCPU. So thread creation, the CPUID query and compiling and
//! loading the vCPU filters happen on the second core while the main
//! thread creates the VM, its memory slots and vCPUs, instead of one after
//! the other.
//!
//! A thread confines itself before it ever holds a vCPU or touches guest
//! memory, and guest code still runs only after every thread is confined
//! (the run loop's gate). A VM dropped before it runs closes the job
//! channels; the threads see it and end, and are joined.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::head_start::HeadStart;
use crate::seccomp::{confine_current_thread, SeccompError, ThreadRole};

/// What a vCPU thread runs once its vCPU is ready: given how its
/// confinement went, its whole life in the guest.
pub(crate) type VcpuJob<R> = Box<dyn FnOnce(Result<(), SeccompError>) -> R + Send>;

/// A task a thread runs before it confines itself.
pub(crate) type FirstTask = Box<dyn FnOnce() + Send>;

/// The vCPU threads of a VM, waiting for their jobs.
pub(crate) struct VcpuThreads<R: Send + 'static> {
    waiting: Vec<Waiting<R>>,
}

struct Waiting<R> {
    index: u64,
    job: SyncSender<VcpuJob<R>>,
    thread: JoinHandle<Option<R>>,
}

impl<R: Send + 'static> VcpuThreads<R> {
    /// Starts threads `vcpu0`... for `count` vCPUs, each confined to
    /// `role` (none: seccomp off). `first` runs on vCPU 0's thread before
    /// it confines itself.
    pub(crate) fn spawn(
        count: u64,
        role: Option<ThreadRole>,
        mut first: Option<FirstTask>,
    ) -> Result<Self, (u64, std::io::Error)> {
        let mut threads = VcpuThreads {
            waiting: Vec::new(),
        };
        // The creator goes on to KVM_CREATE_VM and more without pausing:
        // without a head start these threads would begin only after it.
        let head = HeadStart::here();
        for index in 0..count {
            let (job, jobs) = mpsc::sync_channel(1);
            let task = if index == 0 { first.take() } else { None };
            let (started, pending) = head.as_ref().map(HeadStart::pair).unzip();
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    if let Some(started) = started {
                        started.release();
                    }
                    wait_for_job(task, role, jobs)
                })
                // Threads already started are joined on drop.
                .map_err(|e| (index, e))?;
            if let (Some(head), Some(pending)) = (&head, pending) {
                head.pin(pending, &thread);
            }
            threads.waiting.push(Waiting { index, job, thread });
        }
        Ok(threads)
    }

    /// Hands vCPU `index`'s thread its job; its handle, to kick and join
    /// it. Fails if the thread is gone (it panicked in its first task).
    pub(crate) fn start(
        &mut self,
        index: u64,
        job: VcpuJob<R>,
    ) -> Result<JoinHandle<Option<R>>, std::io::Error> {
        let at = self
            .waiting
            .iter()
            .position(|w| w.index == index)
            .ok_or_else(|| std::io::Error::other(format!("no thread for vCPU {index}")))?;
        let Waiting {
            job: to, thread, ..
        } = self.waiting.swap_remove(at);
        match to.send(job) {
            Ok(()) => Ok(thread),
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other(format!(
                    "the thread of vCPU {index} ended before its vCPU was ready"
                )))
            }
        }
    }
}

impl<R: Send + 'static> Drop for VcpuThreads<R> {
    fn drop(&mut self) {
        // Closing a job channel ends its thread's wait.
        for Waiting { job, thread, .. } in self.waiting.drain(..) {
            drop(job);
            let _ = thread.join();
        }
    }
}

fn wait_for_job<R>(
    first: Option<FirstTask>,
    role: Option<ThreadRole>,
    jobs: Receiver<VcpuJob<R>>,
) -> Option<R> {
    if let Some(task) = first {
        task();
    }
    let confined = match role {
        Some(role) => confine_current_thread(role),
        None => Ok(()),
    };
    jobs.recv().ok().map(|job| job(confined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vcpu_threads_run_first_task_then_job() {
        let (tx, rx) = mpsc::channel();
        let first: FirstTask = Box::new(move || {
            tx.send(std::thread::current().name().map(String::from))
                .unwrap()
        });
        let mut threads = VcpuThreads::<u64>::spawn(2, None, Some(first)).unwrap();
        // The first task ran on vCPU 0's thread, before any job exists.
        assert_eq!(rx.recv().unwrap().as_deref(), Some("vcpu0"));
        for index in [1, 0] {
            let t = threads
                .start(
                    index,
                    Box::new(move |confined| {
                        assert!(confined.is_ok());
                        index * 10
                    }),
                )
                .unwrap();
            assert_eq!(t.join().unwrap(), Some(index * 10));
        }
        assert!(threads.start(0, Box::new(|_| 0)).is_err(), "started twice");
    }

    #[test]
    fn test_vcpu_threads_end_when_dropped_without_jobs() {
        let threads = VcpuThreads::<()>::spawn(3, None, None).unwrap();
        let ids: Vec<_> = threads
            .waiting
            .iter()
            .map(|w| w.thread.thread().id())
            .collect();
        assert_eq!(ids.len(), 3);
        // Drop joins: it returns only once every thread has ended.
        drop(threads);
    }

    #[test]
    fn test_vcpu_thread_gone_is_an_error() {
        let first: FirstTask = Box::new(|| panic!("first task fails"));
        let mut threads = VcpuThreads::<()>::spawn(1, None, Some(first)).unwrap();
        while !threads.waiting[0].thread.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let e = threads.start(0, Box::new(|_| ())).unwrap_err();
        assert!(
            e.to_string().contains("ended before its vCPU was ready"),
            "{e}"
        );
    }
}
