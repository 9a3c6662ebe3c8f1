//! The hand-over of a snapshot request from a [`crate::VmHandle`] to the
//! thread running the VM, and of its result back: one request at a time.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::error::SnapshotError;
use super::{SnapshotInfo, SnapshotRequest};

#[derive(Debug, Default)]
enum Job {
    #[default]
    Idle,
    /// Asked for, not yet taken by the main loop.
    Pending(SnapshotRequest),
    /// The main loop is taking the snapshot.
    Running,
    /// Done; the asker collects it.
    Done(Result<SnapshotInfo, SnapshotError>),
}

/// One snapshot request and its result.
#[derive(Debug, Default)]
pub(crate) struct SnapshotSlot {
    job: Mutex<Job>,
    changed: Condvar,
}

impl SnapshotSlot {
    fn job(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts `request`; refused while another is in progress.
    pub fn submit(&self, request: SnapshotRequest) -> Result<(), SnapshotError> {
        let mut job = self.job();
        if !matches!(*job, Job::Idle) {
            return Err(SnapshotError::Busy);
        }
        *job = Job::Pending(request);
        Ok(())
    }

    /// The main loop takes the pending request, if any.
    pub fn take(&self) -> Option<SnapshotRequest> {
        let mut job = self.job();
        match std::mem::take(&mut *job) {
            Job::Pending(r) => {
                *job = Job::Running;
                Some(r)
            }
            other => {
                *job = other;
                None
            }
        }
    }

    /// The main loop posts the result.
    pub fn finish(&self, result: Result<SnapshotInfo, SnapshotError>) {
        *self.job() = Job::Done(result);
        self.changed.notify_all();
    }

    /// Waits for the result. `stopped` tells whether the VM's main loop
    /// has ended (it then never takes a pending request: the request is
    /// withdrawn and the wait ends with [`SnapshotError::Stopped`]).
    pub fn wait(&self, stopped: impl Fn() -> bool) -> Result<SnapshotInfo, SnapshotError> {
        let mut job = self.job();
        loop {
            match std::mem::take(&mut *job) {
                Job::Done(result) => return result,
                Job::Pending(_) if stopped() => return Err(SnapshotError::Stopped),
                other => *job = other,
            }
            // Bounded: a stop raised from a signal handler cannot notify.
            job = self
                .changed
                .wait_timeout(job, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SnapshotKind;
    use std::sync::Arc;

    fn request() -> SnapshotRequest {
        SnapshotRequest {
            snapshot_path: "/s".into(),
            mem_file_path: "/m".into(),
            kind: SnapshotKind::Full,
        }
    }

    #[test]
    fn test_slot_hands_over_one_request_at_a_time() {
        let slot = Arc::new(SnapshotSlot::default());
        slot.submit(request()).unwrap();
        assert!(matches!(slot.submit(request()), Err(SnapshotError::Busy)));
        let main = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                while slot.take().is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                slot.finish(Err(SnapshotError::NotPaused));
            })
        };
        let r = slot.wait(|| false);
        assert!(matches!(r, Err(SnapshotError::NotPaused)));
        main.join().unwrap();
        // Idle again.
        slot.submit(request()).unwrap();
        // A loop that has ended never takes it: the wait gives up.
        assert!(matches!(slot.wait(|| true), Err(SnapshotError::Stopped)));
        assert!(slot.take().is_none());
    }
}
