//! The stub thread: accepting gdb, then driving gdbstub's state machine
//! with waits bounded in time, so the thread notices the VM's end whatever
//! gdb does (and [`crate::Vm::run`] can join it).
//!
//! ```text
//! accept (poll, 100 ms at a time) -> pause the VM -> session:
//!   Idle      gdb's packets (registers, memory, breakpoints...) answered
//!             while the VM stays paused
//!   Running   after a resume: wait for gdb's bytes (Ctrl-C), a debug exit
//!             (eventfd) with the VM paused, or the VM's end
//!   Ctrl-C    pause the VM (the main loop kicks every vCPU), SIGINT
//!   detach    guest debugging off, the VM runs on; accept again
//!   kill      the VM is stopped
//! ```

use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use super::conn::{GdbConnection, Ready};
use super::target::{StopVerdict, VmTarget};
use super::ExitCode;
use crate::outcome::VmOutcome;
use crate::seccomp::{confine_current_thread, ThreadRole};

/// How long a wait for gdb lasts before the VM's state is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// The same while a debug exit waits for the rest of the VM to pause.
const STOP_POLL: Duration = Duration::from_millis(2);

/// How a session ended.
enum Ended {
    /// gdb detached or went away; the VM runs on.
    Detached,
    /// The VM ended (or gdb killed it): the stub ends.
    VmEnded,
}

/// The stub thread's body.
pub(super) fn serve(
    listener: &UnixListener,
    mut target: VmTarget,
    seccomp: bool,
    exit_code: ExitCode,
    path: &Path,
) {
    if seccomp {
        if let Err(e) = confine_current_thread(ThreadRole::Gdb) {
            log::error!("gdb: {e}; the stub is off and the VM stops");
            target.vcpus().handle().stop();
            return;
        }
    }
    log::warn!(
        "the guest waits for gdb: `target remote {}` (the VM runs once gdb continues)",
        path.display()
    );
    while let Some(stream) = accept(listener, &target) {
        match session(stream, &mut target, exit_code) {
            Ended::Detached => log::info!("gdb detached; the VM runs on"),
            Ended::VmEnded => return,
        }
    }
}

/// The next gdb, or `None` once the VM has ended.
fn accept(listener: &UnixListener, target: &VmTarget) -> Option<UnixStream> {
    loop {
        if target.vcpus().vm_ended() {
            return None;
        }
        let mut fd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, IDLE_POLL.as_millis() as i32) };
        if n <= 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(e) => {
                log::warn!("gdb: accept: {e}");
                std::thread::sleep(IDLE_POLL);
            }
        }
    }
}

/// The stop reason that tells gdb how the VM ended.
fn end_reason(target: &VmTarget, exit_code: ExitCode) -> MultiThreadStopReason<u64> {
    match target.vcpus().outcome() {
        Some(
            o @ (VmOutcome::Halted { .. } | VmOutcome::PowerOff | VmOutcome::DebugExit { .. }),
        ) => MultiThreadStopReason::Exited(exit_code(&o)),
        Some(VmOutcome::TripleFault { .. }) => MultiThreadStopReason::Terminated(Signal::SIGSEGV),
        Some(VmOutcome::VcpuFault { .. }) => MultiThreadStopReason::Terminated(Signal::SIGILL),
        Some(VmOutcome::Timeout { .. } | VmOutcome::MaxExits { .. }) => {
            MultiThreadStopReason::Terminated(Signal::SIGALRM)
        }
        _ => MultiThreadStopReason::Terminated(Signal::SIGKILL),
    }
}

type Machine<'a> = GdbStubStateMachine<'a, VmTarget, GdbConnection>;

/// One gdb connection, from its first packet to its end.
fn session(stream: UnixStream, target: &mut VmTarget, exit_code: ExitCode) -> Ended {
    let mut conn = GdbConnection::new(stream);
    // Nothing changes until the peer speaks: a connection that closes
    // without a byte (a second VMM probing whether the socket is in use)
    // leaves the VM as it was.
    loop {
        match conn.wait(None, IDLE_POLL) {
            Ok(Ready::Gdb) => break,
            Ok(_) if target.vcpus().vm_ended() => return Ended::VmEnded,
            Ok(_) => continue,
            Err(_) => return Ended::Detached,
        }
    }
    if !conn.has_input() {
        log::debug!("gdb: a connection closed before its first byte");
        return Ended::Detached;
    }
    log::info!("gdb connected");
    // Stopped for gdb (at the first connection the VM is paused at its
    // entry already).
    if target
        .vcpus()
        .pause()
        .and_then(|_| target.settle())
        .is_err()
    {
        return Ended::VmEnded;
    }
    target.exits().clear();
    let stub = match GdbStub::<VmTarget, GdbConnection>::builder(conn).build() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("gdb: {e}");
            return detach(target);
        }
    };
    let mut machine: Machine<'_> = match stub.run_state_machine(target) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("gdb: {e}");
            return detach(target);
        }
    };
    loop {
        let step = match machine {
            GdbStubStateMachine::Idle(mut g) => match g.borrow_conn().wait(None, IDLE_POLL) {
                Ok(Ready::Gdb) => match g.borrow_conn().next_byte() {
                    Ok(Some(byte)) => g.incoming_data(target, byte),
                    Ok(None) | Err(_) => return gone(target),
                },
                Ok(_) if target.vcpus().vm_ended() => {
                    // gdb waits for its user, not for a stop: nothing may
                    // be sent now, so the connection just closes.
                    log::info!("gdb: the VM ended while gdb was at its prompt");
                    return Ended::VmEnded;
                }
                Ok(_) => Ok(GdbStubStateMachine::Idle(g)),
                Err(_) => return gone(target),
            },
            GdbStubStateMachine::Running(mut g) => {
                if let Some(reason) = target.take_refused() {
                    machine = match g.report_stop(target, reason) {
                        Ok(m) => m,
                        Err(e) => {
                            log::warn!("gdb: session ended: {e}");
                            return gone(target);
                        }
                    };
                    continue;
                }
                if target.vcpus().vm_ended() {
                    let reason = end_reason(target, exit_code);
                    let _ = g.report_stop(target, reason);
                    return Ended::VmEnded;
                }
                let pending = target.exits().pending();
                if let (Some(first), true) = (pending.first(), target.vcpus().paused()) {
                    let first = *first;
                    let verdict = target.settle().and_then(|_| target.verdict(first));
                    let verdict = match verdict {
                        Ok(StopVerdict::Resume) => target.resume_again().map(|_| None),
                        Ok(StopVerdict::Report(reason)) => Ok(Some(reason)),
                        Err(e) => Err(e),
                    };
                    match verdict {
                        Ok(Some(reason)) => g.report_stop(target, reason),
                        Ok(None) => Ok(GdbStubStateMachine::Running(g)),
                        // The VM ended meanwhile: the next turn says so.
                        Err(_) if target.vcpus().vm_ended() => Ok(GdbStubStateMachine::Running(g)),
                        Err(e) => {
                            log::warn!("gdb: {e}");
                            return gone(target);
                        }
                    }
                } else {
                    let ready = target.exits().ready_fd().as_raw_fd();
                    let timeout = if pending.is_empty() {
                        IDLE_POLL
                    } else {
                        STOP_POLL
                    };
                    match g.borrow_conn().wait(Some(ready), timeout) {
                        Ok(Ready::Gdb) => match g.borrow_conn().next_byte() {
                            Ok(Some(byte)) => g.incoming_data(target, byte),
                            Ok(None) | Err(_) => return gone(target),
                        },
                        Ok(Ready::Other) => {
                            // Drained here, read again through `pending`.
                            let _ = target.exits().ready_fd().read();
                            Ok(GdbStubStateMachine::Running(g))
                        }
                        Ok(Ready::Timeout) => Ok(GdbStubStateMachine::Running(g)),
                        Err(_) => return gone(target),
                    }
                }
            }
            GdbStubStateMachine::CtrlCInterrupt(g) => {
                let reason = match target.vcpus().pause().and_then(|_| target.settle()) {
                    Ok(()) => target.interrupted(),
                    Err(_) => end_reason(target, exit_code),
                };
                g.interrupt_handled(target, Some(reason))
            }
            GdbStubStateMachine::Disconnected(g) => {
                return match g.get_reason() {
                    DisconnectReason::Disconnect => detach(target),
                    DisconnectReason::Kill => {
                        log::warn!("gdb killed the VM");
                        target.vcpus().handle().stop();
                        Ended::VmEnded
                    }
                    DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_) => {
                        Ended::VmEnded
                    }
                }
            }
        };
        machine = match step {
            Ok(m) => m,
            Err(e) => {
                log::warn!("gdb: session ended: {e}");
                return gone(target);
            }
        };
    }
}

/// gdb went away (closed the socket, or a protocol error): as a detach,
/// unless the VM ended.
fn gone(target: &mut VmTarget) -> Ended {
    if target.vcpus().vm_ended() {
        return Ended::VmEnded;
    }
    log::warn!("gdb: the connection ended without a detach");
    detach(target)
}

/// Guest debugging off, every vCPU released, the VM running.
fn detach(target: &mut VmTarget) -> Ended {
    if target.release().is_err() {
        return Ended::VmEnded;
    }
    target.exits().clear();
    target.vcpus().resume(Vec::new());
    Ended::Detached
}
