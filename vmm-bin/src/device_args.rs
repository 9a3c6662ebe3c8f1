//! Parsers for the device flags (`--disk`, `--net`, `--vsock`): comma-
//! separated `key=value` lists, as QEMU and Cloud Hypervisor spell them.
//! Every error names the flag's value and the key at fault.

use std::path::PathBuf;

use vmm_core::config::{DiskConfig, NetConfig, VsockConfig};

/// `key=value` pairs of `s`, in order; a bare word is an error.
fn pairs<'a>(s: &'a str, usage: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    s.split(',')
        .map(|item| {
            item.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("'{s}': '{item}' is not key=value (expected {usage})"))
        })
        .collect()
}

fn on_off(s: &str, key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}': {key}={v} is not on or off")),
    }
}

const DISK_USAGE: &str = "path=FILE[,readonly=on][,serial=ID]";

/// Parses `--disk path=FILE[,readonly=on][,serial=ID]`.
pub fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let mut path = None;
    let mut read_only = false;
    let mut serial = None;
    for (k, v) in pairs(s, DISK_USAGE)? {
        match k {
            "path" if !v.is_empty() => path = Some(PathBuf::from(v)),
            "readonly" | "ro" => read_only = on_off(s, k, v)?,
            "serial" => {
                // virtio-blk's GET_ID answer is at most 20 bytes.
                if v.len() > 20 {
                    return Err(format!(
                        "'{s}': serial '{v}' is {} bytes, at most 20 fit",
                        v.len()
                    ));
                }
                serial = Some(v.to_string());
            }
            _ => {
                return Err(format!(
                    "'{s}': unknown or empty key '{k}' (expected {DISK_USAGE})"
                ))
            }
        }
    }
    let path = path.ok_or_else(|| format!("'{s}' has no path= (expected {DISK_USAGE})"))?;
    Ok(DiskConfig {
        path,
        read_only,
        serial,
    })
}

const NET_USAGE: &str = "tap=NAME[,mac=MAC]";

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!(
            "MAC '{s}' is not six hex bytes (aa:bb:cc:dd:ee:ff)"
        ));
    }
    for (b, p) in mac.iter_mut().zip(&parts) {
        *b = match (p.len(), u8::from_str_radix(p, 16)) {
            (2, Ok(v)) => v,
            _ => return Err(format!("MAC '{s}': '{p}' is not a hex byte")),
        };
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "MAC '{s}' is a multicast address (low bit of the first byte set)"
        ));
    }
    Ok(mac)
}

/// Parses `--net tap=NAME[,mac=MAC]`.
pub fn parse_net(s: &str) -> Result<NetConfig, String> {
    let mut tap = None;
    let mut mac = None;
    for (k, v) in pairs(s, NET_USAGE)? {
        match k {
            // IFNAMSIZ is 16 with the NUL.
            "tap" if !v.is_empty() && v.len() < 16 => tap = Some(v.to_string()),
            "tap" => return Err(format!("'{s}': tap name '{v}' must be 1 to 15 bytes")),
            "mac" => mac = Some(parse_mac(v).map_err(|e| format!("'{s}': {e}"))?),
            _ => return Err(format!("'{s}': unknown key '{k}' (expected {NET_USAGE})")),
        }
    }
    let tap = tap.ok_or_else(|| format!("'{s}' has no tap= (expected {NET_USAGE})"))?;
    Ok(NetConfig { tap, mac })
}

const VSOCK_USAGE: &str = "cid=N,socket=PATH";

/// Parses `--vsock cid=N,socket=PATH`.
pub fn parse_vsock(s: &str) -> Result<VsockConfig, String> {
    let mut cid = None;
    let mut socket = None;
    for (k, v) in pairs(s, VSOCK_USAGE)? {
        match k {
            "cid" => {
                let n = crate::cli::parse_u64(v).map_err(|e| format!("'{s}': cid: {e}"))?;
                // 0-2 are the hypervisor, local and host; u32::MAX is "any".
                if !(3..u64::from(u32::MAX)).contains(&n) {
                    return Err(format!("'{s}': cid {n} must be 3 to {}", u32::MAX - 1));
                }
                cid = Some(n);
            }
            "socket" if !v.is_empty() => socket = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "'{s}': unknown or empty key '{k}' (expected {VSOCK_USAGE})"
                ))
            }
        }
    }
    match (cid, socket) {
        (Some(cid), Some(socket)) => Ok(VsockConfig { cid, socket }),
        _ => Err(format!("'{s}' needs both cid= and socket= ({VSOCK_USAGE})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_disk() {
        let d = parse_disk("path=/tmp/a.img,readonly=on,serial=disk0").unwrap();
        assert_eq!(d.path, PathBuf::from("/tmp/a.img"));
        assert!(d.read_only);
        assert_eq!(d.serial.as_deref(), Some("disk0"));
        assert!(!parse_disk("path=x").unwrap().read_only);
        for (bad, needle) in [
            ("readonly=on", "no path="),
            ("path=x,readonly=maybe", "readonly=maybe"),
            ("path=x,size=3", "unknown or empty key 'size'"),
            ("/tmp/a.img", "'/tmp/a.img' is not key=value"),
            ("path=x,serial=123456789012345678901", "21 bytes"),
        ] {
            let e = parse_disk(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn test_parse_net_and_mac() {
        let n = parse_net("tap=vmtap0,mac=02:00:00:aa:bb:0c").unwrap();
        assert_eq!(n.tap, "vmtap0");
        assert_eq!(n.mac, Some([2, 0, 0, 0xaa, 0xbb, 0x0c]));
        assert!(parse_net("tap=t").unwrap().mac.is_none());
        for (bad, needle) in [
            ("mac=02:00:00:00:00:01", "no tap="),
            ("tap=t,mac=02:00:00:00:01", "six hex bytes"),
            ("tap=t,mac=01:00:00:00:00:01", "multicast"),
            ("tap=t,mac=02:00:00:00:00:zz", "'zz'"),
            ("tap=abcdefghijklmnop", "1 to 15 bytes"),
        ] {
            let e = parse_net(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn test_parse_vsock() {
        let v = parse_vsock("cid=3,socket=/tmp/v.sock").unwrap();
        assert_eq!((v.cid, v.socket), (3, PathBuf::from("/tmp/v.sock")));
        for (bad, needle) in [
            ("cid=2,socket=/s", "cid 2 must be 3"),
            ("cid=3", "needs both"),
            ("cid=x,socket=/s", "cid:"),
        ] {
            let e = parse_vsock(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
