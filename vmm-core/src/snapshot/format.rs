//! The snapshot file: a fixed header, then the body.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RVMMSNAP"
//!      8     4  format version (little-endian), FORMAT_VERSION
//!     12     4  reserved, 0
//!     16     8  body length in bytes (little-endian)
//!     24     4  CRC32 (IEEE, as crc32fast computes it) of the body
//!     28     4  reserved, 0
//!     32     -  the body: SnapshotBody as JSON
//! ```
//!
//! The body is JSON (serde_json): it is small next to guest RAM (tens of
//! KiB per vCPU, most of it the 4 KiB XSAVE area), so a compact binary
//! encoding would save little, while JSON can be read with any tool when
//! a restore goes wrong, and its parser is already a dependency of the
//! VM's config. The KVM structures inside it are kvm-bindings' serde form
//! (their bytes in the kernel's layout, as arrays of numbers).
//!
//! [`decode`] checks everything before parsing: magic, version, reserved
//! fields, a length bound, truncation, trailing bytes, the CRC; then it
//! parses each top-level section on its own, so an error names the
//! section. It never panics, whatever the input (the `snapshot_parser`
//! fuzz target holds it to that).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::SnapshotBody;
use super::error::SnapshotError;

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"RVMMSNAP";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Header length.
pub const HEADER_LEN: usize = 32;
/// The largest body accepted: far above any real snapshot (a 254-vCPU VM
/// is about 10 MiB), far below what would exhaust a host's memory.
pub const MAX_BODY_LEN: u64 = 64 << 20;

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// Body length.
    pub body_len: u64,
    /// The body's CRC32.
    pub crc32: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Encodes `body` as a whole snapshot file.
pub fn encode(body: &SnapshotBody) -> Result<Vec<u8>, SnapshotError> {
    let json = serde_json::to_vec(body).map_err(|source| SnapshotError::Body {
        section: "body",
        source,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Checks the header of `file` (the whole file's bytes) and returns it,
/// with the body's bytes.
pub fn decode_header(file: &[u8]) -> Result<(Header, &[u8]), SnapshotError> {
    let found = file.len() as u64;
    let head = &file[..file.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] {
        let mut first = [0u8; 8];
        first[..head.len()].copy_from_slice(head);
        return Err(SnapshotError::Magic { found: first });
    }
    if file.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated {
            what: "header",
            expected: HEADER_LEN as u64,
            found,
        });
    }
    let version = u32_at(file, 8);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    for offset in [12, 28] {
        let value = u32_at(file, offset);
        if value != 0 {
            return Err(SnapshotError::HeaderReserved { offset, value });
        }
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&file[16..24]);
    let body_len = u64::from_le_bytes(len);
    if body_len > MAX_BODY_LEN {
        return Err(SnapshotError::TooLarge {
            len: body_len,
            max: MAX_BODY_LEN,
        });
    }
    let expected = HEADER_LEN as u64 + body_len;
    if found < expected {
        return Err(SnapshotError::Truncated {
            what: "body",
            expected,
            found,
        });
    }
    if found > expected {
        return Err(SnapshotError::TrailingBytes { expected, found });
    }
    let header = Header {
        version,
        body_len,
        crc32: u32_at(file, 24),
    };
    Ok((header, &file[HEADER_LEN..]))
}

/// The body's top-level sections, each kept as JSON until it is parsed
/// on its own (so a parse error names its section).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    vmm: Value,
    config: Value,
    memory: Value,
    vm: Value,
    vcpus: Value,
    devices: Value,
    virtio: Value,
}

fn section<T: serde::de::DeserializeOwned>(
    section: &'static str,
    v: Value,
) -> Result<T, SnapshotError> {
    serde_json::from_value(v).map_err(|source| SnapshotError::Body { section, source })
}

/// Decodes a whole snapshot file (see the module docs for the checks).
pub fn decode(file: &[u8]) -> Result<SnapshotBody, SnapshotError> {
    let (header, body) = decode_header(file)?;
    let crc = crc32fast::hash(body);
    if crc != header.crc32 {
        return Err(SnapshotError::Checksum {
            expected: header.crc32,
            found: crc,
        });
    }
    let s: Sections = serde_json::from_slice(body).map_err(|source| SnapshotError::Body {
        section: "body",
        source,
    })?;
    Ok(SnapshotBody {
        vmm: section("vmm", s.vmm)?,
        config: section("config", s.config)?,
        memory: section("memory", s.memory)?,
        vm: section("vm", s.vm)?,
        vcpus: section("vcpus", s.vcpus)?,
        devices: section("devices", s.devices)?,
        virtio: section("virtio", s.virtio)?,
    })
}
