//! Who answers an [`Action`], in which state of the VM.
//!
//! The VM is *Not started* until `InstanceStart`, then *Running* (or
//! *Paused*) until it ends, when the process exits. Before the start the
//! configuration lives on the main thread (the one that will build and run
//! the VM, and may open files); the API thread forwards configuration
//! calls there ([`ToMain`]) and waits for the answer. After the start the
//! API thread answers everything itself through the [`VmHandle`] and a
//! copy of the configuration the VM was built from: no call can change a
//! running VM's configuration, as in Firecracker.
//!
//! `PUT /snapshot/load` is a pre-boot call like the configuration calls:
//! the main thread builds the VM from the snapshot (instead of from the
//! configuration) and the API thread then serves it as a started VM.
//! `PUT /snapshot/create` is a runtime call ([`super::snapshot`]).
//!
//! Wrong-state calls get Firecracker's errors: configuration after the
//! start, "The requested operation is not supported after starting the
//! microVM."; runtime actions before it, "... before starting the
//! microVM.". Firecracker resources this VMM does not have get a 400
//! saying so.

use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use vmm_core::VmHandle;

use super::http::Response;
use super::model::{ActionType, FullVmConfig, InstanceInfo, Version, VmState};
use super::prepare::{Prepared, PreparedVm};
use super::routes::Action;
use super::snapshot::{self, LoadRequest, LOAD_NOT_ALLOWED};

/// Firecracker's `OperationNotSupportedPostBoot`.
pub const NOT_AFTER_START: &str =
    "The requested operation is not supported after starting the microVM.";
/// Firecracker's `OperationNotSupportedPreBoot`.
pub const NOT_BEFORE_START: &str =
    "The requested operation is not supported before starting the microVM.";

/// How long `FlushMetrics` waits for the run loop to write the report.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The VM as the API thread knows it after the start.
#[derive(Debug, Clone)]
pub struct StartedVm {
    /// The running VM.
    pub handle: VmHandle,
    /// What it was built from (`GET /vm/config`, `GET /machine-config`).
    pub config: FullVmConfig,
}

/// A call forwarded to the main thread before the start.
#[derive(Debug)]
pub struct ToMain {
    /// The configuration call or `InstanceStart`.
    pub action: Action,
    /// Where the answer goes.
    pub reply: Sender<MainReply>,
}

/// The main thread's answer.
#[derive(Debug)]
pub struct MainReply {
    /// The response to send.
    pub response: Response,
    /// Set when the call started the VM.
    pub started: Option<StartedVm>,
}

/// What the main thread does with a forwarded call.
#[derive(Debug)]
pub enum Preboot {
    /// Answer this.
    Reply(Response),
    /// `InstanceStart`: build the VM from this and answer 204 (or 400 with
    /// the build error).
    Start(Box<PreparedVm>),
    /// `PUT /snapshot/load`: build the VM from this snapshot and answer
    /// 204 (or 400 with the restore error).
    Load(LoadRequest),
}

/// Applies a forwarded configuration call to `prepared` (main thread).
/// `apply_logger` reconfigures the process's logger for `PUT /logger`.
pub fn preboot(
    prepared: &mut Prepared,
    action: Action,
    apply_logger: &mut dyn FnMut(&super::model::Logger) -> Result<(), String>,
) -> Preboot {
    let done = |r: Result<(), super::prepare::PrepareError>| {
        Preboot::Reply(match r {
            Ok(()) => Response::no_content(),
            Err(e) => Response::fault(400, &e.to_string()),
        })
    };
    match action {
        Action::GetMachineConfig => Preboot::Reply(Response::ok_json(prepared.machine_config())),
        Action::GetFullConfig => Preboot::Reply(Response::ok_json(&prepared.full_config())),
        Action::PutBootSource(b) => done(prepared.set_boot_source(b)),
        Action::PutMachineConfig(m) => done(prepared.set_machine_config(m)),
        Action::PatchMachineConfig(u) => done(prepared.patch_machine_config(u)),
        Action::PutDrive(d) => done(prepared.insert_drive(d)),
        Action::PutNetwork(n) => done(prepared.insert_net(n)),
        Action::PutVsock(v) => done(prepared.set_vsock(v)),
        Action::PutEntropy(e) => done(prepared.set_entropy(e)),
        Action::PutMetrics(m) => done(prepared.set_metrics(m)),
        Action::PutLogger(l) => match apply_logger(&l) {
            Ok(()) => {
                prepared.set_logger(l);
                Preboot::Reply(Response::no_content())
            }
            Err(e) => Preboot::Reply(Response::fault(400, &format!("Logger error: {e}"))),
        },
        Action::SnapshotLoad(_) if !prepared.may_load_snapshot() => {
            Preboot::Reply(Response::fault(400, LOAD_NOT_ALLOWED))
        }
        Action::SnapshotLoad(p) => match snapshot::load_request(p) {
            Ok(load) => Preboot::Load(load),
            Err(message) => Preboot::Reply(Response::fault(400, &message)),
        },
        Action::Instance(ActionType::InstanceStart) => match prepared.vm_config() {
            Ok(vm) => Preboot::Start(Box::new(vm)),
            Err(e) => Preboot::Reply(Response::fault(400, &format!("Start microvm error: {e}"))),
        },
        // The API thread answers the rest itself; nothing else is sent.
        other => Preboot::Reply(Response::fault(
            400,
            &format!("internal: {other:?} is not a pre-boot call"),
        )),
    }
}

/// PATCH /vm's two calls: blocking until the VM is paused or running
/// again (vmm-core parks every vCPU and the device thread, and keeps the
/// guest clock still across the pause).
fn set_paused(handle: &VmHandle, pause: bool) -> Result<(), vmm_core::VmmError> {
    if pause {
        handle.pause()
    } else {
        handle.resume()
    }
}

/// The API thread's side.
pub struct Controller {
    id: String,
    to_main: Sender<ToMain>,
    started: Option<StartedVm>,
}

impl Controller {
    /// A controller for instance `id`; `started` is set when a config file
    /// already started the VM.
    pub fn new(id: String, to_main: Sender<ToMain>, started: Option<StartedVm>) -> Controller {
        Controller {
            id,
            to_main,
            started,
        }
    }

    fn state(&self) -> &'static str {
        match &self.started {
            None => "Not started",
            Some(vm) if vm.handle.is_paused() => "Paused",
            Some(_) => "Running",
        }
    }

    fn instance_info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.id.clone(),
            state: self.state().to_string(),
            vmm_version: env!("CARGO_PKG_VERSION").to_string(),
            app_name: "vmm-bin".to_string(),
        }
    }

    /// The response to `action`.
    pub fn handle(&mut self, action: Action) -> Response {
        match (&action, &self.started) {
            (Action::GetInstanceInfo, _) => Response::ok_json(&self.instance_info()),
            (Action::GetVersion, _) => Response::ok_json(&Version {
                firecracker_version: env!("CARGO_PKG_VERSION").to_string(),
            }),
            (Action::NotBuilt(path), _) => Response::fault(
                400,
                &format!("{path} is not supported by this build (Firecracker resource without an equivalent here)"),
            ),
            (
                Action::Instance(ActionType::SendCtrlAltDel | ActionType::FlushMetrics)
                | Action::SetVmState(_)
                | Action::SnapshotCreate(_)
                | Action::PatchDrive(_)
                | Action::PatchNetwork(_),
                None,
            ) => Response::fault(400, NOT_BEFORE_START),
            (_, None) => self.forward(action),
            (_, Some(vm)) => Self::runtime(vm, action),
        }
    }

    /// A configuration call or `InstanceStart`, answered by the main
    /// thread.
    fn forward(&mut self, action: Action) -> Response {
        let (tx, rx): (Sender<MainReply>, Receiver<MainReply>) = std::sync::mpsc::channel();
        if self.to_main.send(ToMain { action, reply: tx }).is_err() {
            return Response::fault(400, "the VMM is shutting down");
        }
        match rx.recv() {
            Ok(reply) => {
                if reply.started.is_some() {
                    self.started = reply.started;
                }
                reply.response
            }
            Err(_) => Response::fault(400, "the VMM is shutting down"),
        }
    }

    fn runtime(vm: &StartedVm, action: Action) -> Response {
        match action {
            Action::GetMachineConfig => {
                let m = vm.config.machine_config.clone().unwrap_or_default();
                Response::ok_json(&m)
            }
            Action::GetFullConfig => Response::ok_json(&vm.config),
            Action::Instance(ActionType::SendCtrlAltDel) => match vm.handle.send_ctrl_alt_del() {
                Ok(()) => Response::no_content(),
                Err(e) => Response::fault(400, &format!("Internal VMM error: {e}")),
            },
            Action::Instance(ActionType::FlushMetrics) => {
                if vm.handle.flush_metrics(FLUSH_TIMEOUT) {
                    Response::no_content()
                } else {
                    Response::fault(
                        400,
                        "Metrics error: the VM did not write its metrics within 5 s (it may be ending)",
                    )
                }
            }
            Action::SetVmState(state) => {
                match set_paused(&vm.handle, state == VmState::Paused) {
                    Ok(()) => Response::no_content(),
                    Err(e) => Response::fault(400, &format!("Internal VMM error: {e}")),
                }
            }
            Action::SnapshotCreate(p) => snapshot::create(&vm.handle, &p),
            Action::PatchDrive(_) | Action::PatchNetwork(_) => Response::fault(
                400,
                "Updating a drive or network interface of a running VM is not supported by this build.",
            ),
            _ => Response::fault(400, NOT_AFTER_START),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::BootSource;

    #[test]
    fn test_wrong_state_calls_get_firecrackers_errors_before_start() {
        let (tx, rx) = std::sync::mpsc::channel::<ToMain>();
        let mut c = Controller::new("anonymous-instance".into(), tx, None);
        for a in [
            Action::Instance(ActionType::SendCtrlAltDel),
            Action::Instance(ActionType::FlushMetrics),
            Action::SetVmState(VmState::Paused),
            Action::SnapshotCreate(crate::api::model::SnapshotCreateParams {
                mem_file_path: "/m".into(),
                snapshot_path: "/s".into(),
                snapshot_type: None,
            }),
        ] {
            let r = c.handle(a);
            assert_eq!(r.status, 400);
            assert_eq!(r.fault_message().as_deref(), Some(NOT_BEFORE_START));
        }
        let info = c.handle(Action::GetInstanceInfo);
        assert!(info.body.unwrap().contains(r#""state":"Not started""#));
        // A configuration call goes to the main thread, which answers.
        let main = std::thread::spawn(move || {
            let msg = rx.recv().unwrap();
            assert!(matches!(msg.action, Action::PutBootSource(_)));
            msg.reply
                .send(MainReply {
                    response: Response::no_content(),
                    started: None,
                })
                .unwrap();
        });
        let r = c.handle(Action::PutBootSource(BootSource {
            kernel_image_path: "/k".into(),
            initrd_path: None,
            boot_args: None,
        }));
        assert_eq!(r.status, 204);
        main.join().unwrap();
    }

    fn load(path: &str) -> Action {
        Action::SnapshotLoad(crate::api::model::SnapshotLoadParams {
            snapshot_path: path.into(),
            mem_file_path: Some("/m".into()),
            mem_backend: None,
            enable_diff_snapshots: None,
            track_dirty_pages: None,
            resume_vm: Some(true),
            network_overrides: None,
            vsock_override: None,
            clock_realtime: None,
        })
    }

    #[test]
    fn test_preboot_load_only_on_a_fresh_configuration() {
        let mut no_logger = |_: &crate::api::model::Logger| Ok(());
        let mut p = Prepared::from_flags(vmm_core::VmConfig::default());
        match preboot(&mut p, load("/s"), &mut no_logger) {
            Preboot::Load(l) => {
                assert_eq!(l.snapshot_path, std::path::PathBuf::from("/s"));
                assert!(l.resume_vm);
            }
            other => panic!("{other:?}"),
        }
        let mut flags = vmm_core::VmConfig::default();
        flags.devices.rng = true;
        let mut p = Prepared::from_flags(flags);
        match preboot(&mut p, load("/s"), &mut no_logger) {
            Preboot::Reply(r) => {
                assert_eq!(r.status, 400);
                assert_eq!(r.fault_message().as_deref(), Some(LOAD_NOT_ALLOWED));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_preboot_start_without_kernel_is_refused() {
        let mut p = Prepared::from_flags(vmm_core::VmConfig::default());
        let mut no_logger = |_: &crate::api::model::Logger| Ok(());
        match preboot(
            &mut p,
            Action::Instance(ActionType::InstanceStart),
            &mut no_logger,
        ) {
            Preboot::Reply(r) => {
                let m = r.fault_message().unwrap();
                assert!(
                    m.starts_with("Start microvm error: Boot source error"),
                    "{m}"
                );
            }
            other => panic!("started without a kernel: {other:?}"),
        }
    }
}
