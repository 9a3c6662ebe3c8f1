//! A Firecracker-compatible control API on a Unix socket (`--api-sock`):
//! HTTP/1.1 with JSON bodies, Firecracker's paths, bodies, status codes
//! (200, 204, 400) and `{"fault_message": "..."}` errors, so curl scripts
//! and SDKs written for Firecracker drive this VMM unchanged, within what
//! it supports.
//!
//! One job per module:
//! - [`http`]: request parsing (bounded head and body) and response bytes;
//! - [`routes`]: method and path to an action, bodies decoded;
//! - [`model`]: the bodies, mirroring Firecracker's swagger definitions;
//! - [`prepare`]: the pre-boot configuration and its `VmConfig`;
//! - [`controller`]: who answers what in which VM state;
//! - [`snapshot`]: the snapshot calls' checks and Firecracker's messages;
//! - [`server`]: the socket and the serving thread.

pub mod controller;
pub mod http;
pub mod model;
pub mod prepare;
pub mod routes;
pub mod server;
pub mod snapshot;
