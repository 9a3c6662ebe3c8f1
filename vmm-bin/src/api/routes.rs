//! Method and path to an [`Action`], with the body decoded into its model
//! type: Firecracker's `parsed_request.rs`, with its error messages (an
//! invalid path or method, a body where none belongs or none where one
//! must be, resource IDs, IDs that differ between path and body, JSON that
//! does not decode). Pure: the fuzz target drives it.

use serde::de::DeserializeOwned;

use super::http::{Method, Request};
use super::model::{
    ActionType, BootSource, Drive, Entropy, InstanceActionInfo, Logger, MachineConfig,
    MachineConfigUpdate, Metrics, NetworkInterface, PartialDrive, PartialNetworkInterface,
    SnapshotCreateParams, SnapshotLoadParams, VmState, VmStateRequest, Vsock,
};
use super::snapshot::check_mem_fields;

/// What a request asks for.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    GetInstanceInfo,
    GetVersion,
    GetMachineConfig,
    GetFullConfig,
    PutBootSource(BootSource),
    PutMachineConfig(MachineConfig),
    PatchMachineConfig(MachineConfigUpdate),
    PutDrive(Drive),
    PatchDrive(PartialDrive),
    PutNetwork(NetworkInterface),
    PatchNetwork(PartialNetworkInterface),
    PutVsock(Vsock),
    PutEntropy(Entropy),
    PutLogger(Logger),
    PutMetrics(Metrics),
    Instance(ActionType),
    SetVmState(VmState),
    SnapshotCreate(SnapshotCreateParams),
    SnapshotLoad(SnapshotLoadParams),
    /// A Firecracker resource this VMM does not have (balloon, MMDS, CPU
    /// configuration, serial, pmem, memory hot-plug): its path.
    NotBuilt(String),
}

/// A request that cannot become an action: 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Firecracker's `InvalidPathMethod`.
    #[error("Invalid request method and/or path: {method} {path}.")]
    InvalidPathMethod {
        /// The method.
        method: String,
        /// The path's first segment (as Firecracker reports it).
        path: String,
    },
    /// A GET with a body, or a PUT/PATCH without one.
    #[error("{0}")]
    Generic(String),
    /// An empty resource ID.
    #[error("The ID cannot be empty.")]
    EmptyId,
    /// A resource ID with other characters.
    #[error("API Resource IDs can only contain alphanumeric characters and underscores.")]
    InvalidId,
    /// The body's ID is not the path's.
    #[error("The id from the path does not match the id from the body!")]
    IdMismatch,
    /// The body does not decode.
    #[error("An error occurred when deserializing the json body of a request: {0}.")]
    Json(String),
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RouteError> {
    serde_json::from_slice(body).map_err(|e| RouteError::Json(e.to_string()))
}

/// Firecracker's `checked_id`.
fn checked_id(id: Option<&str>) -> Result<&str, RouteError> {
    match id {
        None | Some("") => Err(RouteError::EmptyId),
        Some(id) if id.chars().all(|c| c == '_' || c.is_alphanumeric()) => Ok(id),
        Some(_) => Err(RouteError::InvalidId),
    }
}

/// The action `req` asks for.
pub fn route(req: &Request) -> Result<Action, RouteError> {
    let trimmed = req.path.trim_start_matches('/');
    let mut tokens = trimmed.split_terminator('/');
    let first = tokens.next().unwrap_or("");
    let second = tokens.next();
    // Firecracker treats an empty body as none.
    let body = req.body.as_deref();
    let invalid = || RouteError::InvalidPathMethod {
        method: req.method.as_str().to_string(),
        path: first.to_string(),
    };
    let not_built = || Ok(Action::NotBuilt(req.path.clone()));
    match (&req.method, first, body) {
        (Method::Get, "", None) => Ok(Action::GetInstanceInfo),
        (Method::Get, "version", None) => Ok(Action::GetVersion),
        (Method::Get, "machine-config", None) => Ok(Action::GetMachineConfig),
        (Method::Get, "vm", None) if second == Some("config") => Ok(Action::GetFullConfig),
        (Method::Get, "balloon" | "mmds" | "hotplug", None) => not_built(),
        (Method::Get, _, Some(_)) => Err(RouteError::Generic(
            "GET request cannot have a body.".into(),
        )),
        (Method::Put, "actions", Some(b)) => {
            Ok(Action::Instance(json::<InstanceActionInfo>(b)?.action_type))
        }
        (Method::Put, "boot-source", Some(b)) => Ok(Action::PutBootSource(json(b)?)),
        (Method::Put, "machine-config", Some(b)) => Ok(Action::PutMachineConfig(json(b)?)),
        (Method::Put, "drives", Some(b)) => {
            let id = checked_id(second)?;
            let d: Drive = json(b)?;
            if d.drive_id != id {
                return Err(RouteError::IdMismatch);
            }
            Ok(Action::PutDrive(d))
        }
        (Method::Put, "network-interfaces", Some(b)) => {
            let id = checked_id(second)?;
            let n: NetworkInterface = json(b)?;
            if n.iface_id != id {
                return Err(RouteError::IdMismatch);
            }
            Ok(Action::PutNetwork(n))
        }
        (Method::Put, "vsock", Some(b)) => Ok(Action::PutVsock(json(b)?)),
        (Method::Put, "entropy", Some(b)) => Ok(Action::PutEntropy(json(b)?)),
        (Method::Put, "logger", Some(b)) => Ok(Action::PutLogger(json(b)?)),
        (Method::Put, "metrics", Some(b)) => Ok(Action::PutMetrics(json(b)?)),
        (Method::Put, "snapshot", Some(b)) => match second {
            Some("create") => Ok(Action::SnapshotCreate(json(b)?)),
            Some("load") => {
                let p: SnapshotLoadParams = json(b)?;
                check_mem_fields(&p).map_err(|m| RouteError::Json(m.to_string()))?;
                Ok(Action::SnapshotLoad(p))
            }
            Some(other) => Err(RouteError::InvalidPathMethod {
                method: "PUT".into(),
                path: format!("/snapshot/{other}"),
            }),
            None => Err(RouteError::Generic(
                "Missing snapshot operation type.".into(),
            )),
        },
        (
            Method::Put,
            "balloon" | "cpu-config" | "mmds" | "serial" | "pmem" | "hotplug",
            Some(_),
        ) => not_built(),
        (Method::Put, _, None) => Err(RouteError::Generic("Empty PUT request.".into())),
        (Method::Patch, "machine-config", Some(b)) => {
            let u: MachineConfigUpdate = json(b)?;
            if u.is_empty() {
                return Err(RouteError::Generic("Empty PATCH request.".into()));
            }
            Ok(Action::PatchMachineConfig(u))
        }
        (Method::Patch, "drives", Some(b)) => {
            let id = checked_id(second)?;
            let d: PartialDrive = json(b)?;
            if d.drive_id != id {
                return Err(RouteError::IdMismatch);
            }
            Ok(Action::PatchDrive(d))
        }
        (Method::Patch, "network-interfaces", Some(b)) => {
            let id = checked_id(second)?;
            let n: PartialNetworkInterface = json(b)?;
            if n.iface_id != id {
                return Err(RouteError::IdMismatch);
            }
            Ok(Action::PatchNetwork(n))
        }
        (Method::Patch, "vm", Some(b)) => Ok(Action::SetVmState(json::<VmStateRequest>(b)?.state)),
        (Method::Patch, "balloon" | "mmds" | "pmem" | "hotplug", Some(_)) => not_built(),
        (Method::Patch, _, None) => Err(RouteError::Generic("Empty PATCH request.".into())),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, body: Option<&str>) -> Request {
        Request {
            method,
            path: path.into(),
            body: body.map(|b| b.as_bytes().to_vec()),
            keep_alive: true,
        }
    }

    fn err(method: Method, path: &str, body: Option<&str>) -> String {
        route(&req(method, path, body)).unwrap_err().to_string()
    }

    #[test]
    fn test_routes_reach_their_actions() {
        assert_eq!(
            route(&req(Method::Get, "/", None)),
            Ok(Action::GetInstanceInfo)
        );
        assert_eq!(
            route(&req(Method::Get, "/vm/config", None)),
            Ok(Action::GetFullConfig)
        );
        assert_eq!(
            route(&req(
                Method::Put,
                "/actions",
                Some(r#"{"action_type":"SendCtrlAltDel"}"#)
            )),
            Ok(Action::Instance(ActionType::SendCtrlAltDel))
        );
        assert_eq!(
            route(&req(Method::Patch, "/vm", Some(r#"{"state":"Paused"}"#))),
            Ok(Action::SetVmState(VmState::Paused))
        );
        let d = r#"{"drive_id":"rootfs","path_on_host":"/r","is_root_device":true,"is_read_only":false}"#;
        assert!(matches!(
            route(&req(Method::Put, "/drives/rootfs", Some(d))),
            Ok(Action::PutDrive(Drive {
                is_root_device: true,
                ..
            }))
        ));
        assert_eq!(
            route(&req(Method::Put, "/balloon", Some("{}"))),
            Ok(Action::NotBuilt("/balloon".into()))
        );
    }

    #[test]
    fn test_route_errors_use_firecrackers_messages() {
        assert_eq!(
            err(Method::Get, "/foo/bar", None),
            "Invalid request method and/or path: GET foo."
        );
        assert_eq!(
            err(Method::Other("POST".into()), "/actions", Some("{}")),
            "Invalid request method and/or path: POST actions."
        );
        assert_eq!(
            err(Method::Get, "/version", Some("x")),
            "GET request cannot have a body."
        );
        assert_eq!(err(Method::Put, "/boot-source", None), "Empty PUT request.");
        assert_eq!(err(Method::Patch, "/vm", None), "Empty PATCH request.");
        assert_eq!(
            err(Method::Patch, "/machine-config", Some("{}")),
            "Empty PATCH request."
        );
        assert_eq!(
            err(Method::Put, "/drives", Some("{}")),
            "The ID cannot be empty."
        );
        assert_eq!(
            err(Method::Put, "/drives/a-b", Some("{}")),
            "API Resource IDs can only contain alphanumeric characters and underscores."
        );
        let d = r#"{"drive_id":"b","path_on_host":"/r","is_root_device":false}"#;
        assert_eq!(
            err(Method::Put, "/drives/a", Some(d)),
            "The id from the path does not match the id from the body!"
        );
        let e = err(
            Method::Put,
            "/boot-source",
            Some(r#"{"kernel_image_path":"/k","x":1}"#),
        );
        assert!(
            e.starts_with("An error occurred when deserializing the json body of a request: unknown field `x`"),
            "{e}"
        );
        assert_eq!(
            err(Method::Put, "/snapshot/load", Some(r#"{"snapshot_path":"/s"}"#)),
            "An error occurred when deserializing the json body of a request: missing field: either `mem_backend` or `mem_file_path` is required."
        );
        assert_eq!(
            err(Method::Put, "/snapshot/restore", Some("{}")),
            "Invalid request method and/or path: PUT /snapshot/restore."
        );
    }
}
