//! The host side of a virtio-net device: [`TapIo`], what the device needs
//! from its backend, and [`Tap`], an existing Linux tap interface opened
//! through `/dev/net/tun` (the kernel's `Documentation/networking/tuntap.rst`).
//!
//! The tap is opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: every read
//! and write is one Ethernet frame preceded by a 12-byte `virtio_net_hdr_v1`
//! (`TUNSETVNETHDRSZ`), the header a VERSION_1 driver uses, so frames pass
//! between the tap and the guest's buffers unchanged apart from
//! `num_buffers`. The header's fields are in the host's byte order; on x86
//! (little-endian) that is virtio 1's order, so no `TUNSETVNETLE` is needed.
//! `IFF_ONE_QUEUE` is not set: the kernel has ignored it since Linux 3.8.
//!
//! Opening never creates an interface: `TUNSETIFF` with a name that does
//! not exist makes a new tap, so the name is first looked up in the
//! process's network namespace (`if_nametoindex`). The tap starts with no
//! offloads (`TUNSETOFFLOAD` 0), which is right for a guest that accepts
//! none; the device widens them once it knows what the guest accepted.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};

/// Bytes of an interface name, with its terminating NUL (`IFNAMSIZ`).
pub const IFNAMSIZ: usize = 16;
/// Bytes of the header before every frame: `struct virtio_net_hdr_v1`.
pub const VNET_HDR_LEN: usize = 12;
/// The character device every tap is reached through.
const TUN_PATH: &str = "/dev/net/tun";
/// `TUNSETIFF` flags: a tap (Ethernet frames), no packet-information
/// prefix, a virtio-net header before each frame.
pub const TAP_FLAGS: i16 = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;

/// What a virtio-net device needs from its host side. [`Tap`] is the real
/// one; tests and fuzzing use in-memory fakes.
///
/// Every frame, in both directions, starts with a [`VNET_HDR_LEN`]-byte
/// `virtio_net_hdr_v1`.
pub trait TapIo: Send {
    /// Reads one frame into `buf`; returns its length, or
    /// `io::ErrorKind::WouldBlock` when there is none. A frame longer than
    /// `buf` is truncated to it.
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one frame.
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize>;

    /// Sets the offloads (`TUN_F_*`) the backend may use in frames it hands
    /// the device.
    fn set_offload(&mut self, flags: u32) -> io::Result<()>;

    /// The descriptor to watch for readability (edge-triggered), if any.
    fn raw_fd(&self) -> Option<RawFd>;

    /// The host interface's name, for a snapshot's backend identity
    /// (a backend without one cannot be snapshotted).
    fn name(&self) -> Option<&str> {
        None
    }
}

/// Errors opening a tap. Each names the tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit an interface name.
    #[error("tap name '{name}' is {len} bytes: an interface name is 1 to {} bytes", IFNAMSIZ - 1)]
    NameLength {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name has a NUL byte.
    #[error("tap name '{name}' contains a NUL byte")]
    NameNul {
        /// The name.
        name: String,
    },
    /// No interface of that name exists in this network namespace.
    #[error("no network interface named '{name}' in this network namespace (create the tap first, e.g. `ip tuntap add dev {name} mode tap`)")]
    NoSuchInterface {
        /// The name.
        name: String,
    },
    /// Looking the name up failed for another reason.
    #[error("looking up network interface '{name}' failed: {source}")]
    Lookup {
        /// The name.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// `/dev/net/tun` cannot be opened.
    #[error("opening {TUN_PATH} for tap '{name}' failed: {source}")]
    OpenTun {
        /// The name.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// The interface exists but `TUNSETIFF` refused to attach to it as a
    /// tap.
    #[error("'{name}' is not a tap: TUNSETIFF refused it as one (it is another kind of interface, a tun, or a multi-queue tap)")]
    NotATap {
        /// The name.
        name: String,
    },
    /// Another process has the (single-queue) tap open.
    #[error("tap '{name}' is busy: another process has it open")]
    Busy {
        /// The name.
        name: String,
    },
    /// Attaching is not allowed.
    #[error("no permission to attach to tap '{name}' (needs CAP_NET_ADMIN or the tap's owner): {source}")]
    Permission {
        /// The name.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// Another ioctl of the set-up failed.
    #[error("tap '{name}': {op} failed: {source}")]
    Ioctl {
        /// The name.
        name: String,
        /// Which ioctl.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags in
/// the union (40 bytes on 64-bit Linux).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    pad: [u8; 22],
}

impl IfReq {
    /// The request for interface `name` with `flags`; checks the name fits
    /// (1 to 15 bytes, no NUL).
    pub fn new(name: &str, flags: i16) -> Result<IfReq, TapError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= IFNAMSIZ {
            return Err(TapError::NameLength {
                name: name.to_string(),
                len: bytes.len(),
            });
        }
        if bytes.contains(&0) {
            return Err(TapError::NameNul {
                name: name.to_string(),
            });
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags,
            pad: [0; 22],
        };
        // The length was checked: the name fits with its NUL.
        if let Some(dst) = req.name.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Ok(req)
    }

    /// The name field, NUL-padded.
    pub fn name_bytes(&self) -> &[u8; IFNAMSIZ] {
        &self.name
    }

    /// The flags field.
    pub fn flags(&self) -> i16 {
        self.flags
    }
}

/// An open tap interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

/// `ioctl(fd, req, arg)`, as an `io::Result`.
///
/// # Safety
/// `arg` must point to a live object of the type request `req` reads or
/// writes.
unsafe fn ioctl_with_ptr<T>(fd: RawFd, req: libc::Ioctl, arg: *mut T) -> io::Result<()> {
    // SAFETY: the caller guarantees `arg` suits `req`; `fd` is an open
    // descriptor or the kernel returns EBADF.
    let rc = unsafe { libc::ioctl(fd, req, arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Tap {
    /// Opens the existing tap `name` (in the process's network namespace)
    /// for virtio-net: non-blocking, close-on-exec, with the virtio-net
    /// header and no offloads.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let mut req = IfReq::new(name, TAP_FLAGS)?;
        let named = |f: fn(String) -> TapError| f(name.to_string());
        interface_exists(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|source| TapError::OpenTun {
                name: name.to_string(),
                source,
            })?;
        let fd = file.as_raw_fd();
        // SAFETY: TUNSETIFF reads (and updates) a `struct ifreq`, which
        // `IfReq` lays out; `req` lives across the call.
        if let Err(e) = unsafe { ioctl_with_ptr(fd, libc::TUNSETIFF, &mut req) } {
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => named(|name| TapError::NotATap { name }),
                Some(libc::EBUSY) => named(|name| TapError::Busy { name }),
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission {
                    name: name.to_string(),
                    source: e,
                },
                _ => TapError::Ioctl {
                    name: name.to_string(),
                    op: "TUNSETIFF",
                    source: e,
                },
            });
        }
        let mut tap = Tap {
            file,
            name: name.to_string(),
        };
        let mut hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int; `hdr_len` lives across the
        // call.
        unsafe { ioctl_with_ptr(fd, libc::TUNSETVNETHDRSZ, &mut hdr_len) }.map_err(|source| {
            TapError::Ioctl {
                name: name.to_string(),
                op: "TUNSETVNETHDRSZ",
                source,
            }
        })?;
        tap.set_offload(0).map_err(|source| TapError::Ioctl {
            name: name.to_string(),
            op: "TUNSETOFFLOAD",
            source,
        })?;
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Checks `name` is an interface of this network namespace.
fn interface_exists(name: &str) -> Result<(), TapError> {
    let Ok(c) = CString::new(name) else {
        return Err(TapError::NameNul {
            name: name.to_string(),
        });
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    if unsafe { libc::if_nametoindex(c.as_ptr()) } != 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Err(TapError::NoSuchInterface {
            name: name.to_string(),
        }),
        _ => Err(TapError::Lookup {
            name: name.to_string(),
            source: e,
        }),
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl TapIo for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.file.write(frame)
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        // TUNSETOFFLOAD takes its argument by value, not through a pointer.
        // SAFETY: no memory is passed; `self.file` is an open tap.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ifreq_layout_name_and_flags() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40, "struct ifreq on x86_64");
        let r = IfReq::new("tap0", TAP_FLAGS).unwrap();
        assert_eq!(&r.name_bytes()[..5], b"tap0\0");
        assert!(r.name_bytes()[4..].iter().all(|&b| b == 0));
        assert_eq!(r.flags(), 0x5002, "IFF_TAP | IFF_NO_PI | IFF_VNET_HDR");
        // 15 bytes fit with the NUL.
        let r = IfReq::new("abcdefghijklmno", 0).unwrap();
        assert_eq!(&r.name_bytes()[..15], b"abcdefghijklmno");
        assert_eq!(r.name_bytes()[15], 0);
    }

    #[test]
    fn test_ifreq_refuses_names_that_do_not_fit() {
        for (name, len) in [
            ("", 0),
            ("abcdefghijklmnop", 16),
            ("a-very-long-tap-name", 20),
        ] {
            match IfReq::new(name, TAP_FLAGS) {
                Err(e @ TapError::NameLength { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("'{name}' is {len} bytes")), "{msg}");
                    assert!(msg.contains("1 to 15"), "{msg}");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(matches!(
            IfReq::new("ta\0p", 0),
            Err(TapError::NameNul { .. })
        ));
    }

    #[test]
    fn test_tap_open_refuses_a_missing_interface_without_creating_it() {
        // No privileges needed: the lookup fails before /dev/net/tun.
        let name = "vmmnotap0x7f";
        let e = Tap::open(name).unwrap_err();
        assert!(matches!(e, TapError::NoSuchInterface { .. }), "{e:?}");
        assert!(e.to_string().contains("'vmmnotap0x7f'"), "{e}");
        assert!(matches!(
            interface_exists(name),
            Err(TapError::NoSuchInterface { .. })
        ));
    }

    #[test]
    fn test_loopback_exists_as_an_interface() {
        // Every network namespace has `lo`: the lookup itself works.
        interface_exists("lo").unwrap();
    }
}
