//! Which checksum and segmentation offloads are in force, from the
//! features the driver accepted (virtio 1.2 sections 5.1.3, 5.1.6.2 and
//! 5.1.6.4), and the checks each frame's `virtio_net_hdr_v1` gets against
//! them.
//!
//! Host-bound frames (transmitq) may use what the device offered and the
//! driver accepted: `VIRTIO_NET_F_CSUM` for partial checksums,
//! `HOST_TSO4`/`HOST_TSO6`/`HOST_UFO` for segmentation; the tap's kernel
//! side completes them. Guest-bound frames (receiveq) may use only what
//! `TUNSETOFFLOAD` allowed the tap, which follows `GUEST_CSUM`,
//! `GUEST_TSO4`/`GUEST_TSO6`/`GUEST_UFO` ([`tun_offload_flags`]). The
//! receive check also catches frames the tap queued under an earlier
//! driver's wider offloads, before the new setting took effect.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP,
};

/// Offset of `flags` in the header.
const FLAGS: usize = 0;
/// Offset of `gso_type` in the header.
const GSO_TYPE: usize = 1;
/// Offset of `num_buffers` (le16) in the header.
pub const NUM_BUFFERS_OFFSET: usize = 10;

/// `TUN_F_*` (linux/if_tun.h).
pub const TUN_F_CSUM: u32 = libc::TUN_F_CSUM;
/// TCP segmentation over IPv4.
pub const TUN_F_TSO4: u32 = libc::TUN_F_TSO4;
/// TCP segmentation over IPv6.
pub const TUN_F_TSO6: u32 = libc::TUN_F_TSO6;
/// UDP fragmentation (accepted, never produced, by current kernels).
pub const TUN_F_UFO: u32 = libc::TUN_F_UFO;
/// Every offload the device can hand a guest.
pub const TUN_F_ALL: u32 = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// The guest-bound offloads the driver's `features` allow, as
/// `TUNSETOFFLOAD` flags. Segmentation needs `GUEST_CSUM` (5.1.3.1); a
/// driver that accepts one without the other gets neither, which is
/// always safe: it receives plain frames.
pub fn tun_offload_flags(features: u64) -> u32 {
    if features & bit(VIRTIO_NET_F_GUEST_CSUM) == 0 {
        return 0;
    }
    let mut flags = TUN_F_CSUM;
    for (feature, flag) in [
        (VIRTIO_NET_F_GUEST_TSO4, TUN_F_TSO4),
        (VIRTIO_NET_F_GUEST_TSO6, TUN_F_TSO6),
        (VIRTIO_NET_F_GUEST_UFO, TUN_F_UFO),
    ] {
        if features & bit(feature) != 0 {
            flags |= flag;
        }
    }
    flags
}

/// Why a frame's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// `NEEDS_CSUM` without the checksum offload in force.
    PartialChecksum,
    /// A `gso_type` (or the ECN bit) outside the offloads in force.
    Segmentation(u8),
}

/// The segmentation type `gso_type` needs, as a TUN flag (`None`: not one
/// the device supports in any direction, e.g. ECN or UDP_L4).
fn gso_flag(gso_type: u8) -> Option<u32> {
    match u32::from(gso_type) {
        VIRTIO_NET_HDR_GSO_NONE => Some(0),
        VIRTIO_NET_HDR_GSO_TCPV4 => Some(TUN_F_TSO4),
        VIRTIO_NET_HDR_GSO_TCPV6 => Some(TUN_F_TSO6),
        VIRTIO_NET_HDR_GSO_UDP => Some(TUN_F_UFO),
        _ => None,
    }
}

/// Checks `hdr` (at least the 12-byte header) against `allowed` (TUN
/// flags).
fn check(hdr: &[u8], allowed: u32) -> Result<(), BadHeader> {
    let flags = hdr.get(FLAGS).copied().unwrap_or(0);
    let gso = hdr.get(GSO_TYPE).copied().unwrap_or(0);
    if u32::from(flags) & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && allowed & TUN_F_CSUM == 0 {
        return Err(BadHeader::PartialChecksum);
    }
    match gso_flag(gso) {
        Some(need) if need & !allowed == 0 => Ok(()),
        _ => Err(BadHeader::Segmentation(gso)),
    }
}

/// Checks a guest-bound header from the tap against `offloads` (what
/// [`tun_offload_flags`] gave for the driver's features) and clears the
/// flag bits the driver may not see: `DATA_VALID` without `GUEST_CSUM`
/// ("the device MUST set flags to zero", 5.1.6.4.1) and bits the device
/// never sets.
pub fn check_rx(hdr: &mut [u8], offloads: u32) -> Result<(), BadHeader> {
    check(hdr, offloads)?;
    let mut keep = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    if offloads & TUN_F_CSUM != 0 {
        keep |= VIRTIO_NET_HDR_F_DATA_VALID;
    }
    if let Some(f) = hdr.get_mut(FLAGS) {
        *f &= keep as u8;
    }
    Ok(())
}

/// The host-bound offloads the driver's `features` allow, as TUN flags
/// (for [`check_tx`]).
pub fn host_offloads(features: u64) -> u32 {
    let mut flags = 0;
    for (feature, flag) in [
        (VIRTIO_NET_F_CSUM, TUN_F_CSUM),
        (VIRTIO_NET_F_HOST_TSO4, TUN_F_TSO4),
        (VIRTIO_NET_F_HOST_TSO6, TUN_F_TSO6),
        (VIRTIO_NET_F_HOST_UFO, TUN_F_UFO),
    ] {
        if features & bit(feature) != 0 {
            flags |= flag;
        }
    }
    flags
}

/// Checks a host-bound header from the driver: it may ask only for the
/// offloads it accepted (5.1.6.2.1).
pub fn check_tx(hdr: &[u8], host: u32) -> Result<(), BadHeader> {
    check(hdr, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST_ALL: u64 = bit(VIRTIO_NET_F_GUEST_CSUM)
        | bit(VIRTIO_NET_F_GUEST_TSO4)
        | bit(VIRTIO_NET_F_GUEST_TSO6)
        | bit(VIRTIO_NET_F_GUEST_UFO);

    fn hdr(flags: u8, gso: u8) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = flags;
        h[1] = gso;
        h
    }

    #[test]
    fn test_tun_offload_flags_follow_guest_features() {
        assert_eq!(tun_offload_flags(0), 0);
        assert_eq!(tun_offload_flags(GUEST_ALL), TUN_F_ALL);
        assert_eq!(tun_offload_flags(bit(VIRTIO_NET_F_GUEST_CSUM)), TUN_F_CSUM);
        assert_eq!(
            tun_offload_flags(bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO6)),
            TUN_F_CSUM | TUN_F_TSO6
        );
        // TSO without the checksum offload it depends on: nothing.
        assert_eq!(
            tun_offload_flags(GUEST_ALL & !bit(VIRTIO_NET_F_GUEST_CSUM)),
            0
        );
        // Host-side features do not widen what the guest receives.
        assert_eq!(tun_offload_flags(bit(VIRTIO_NET_F_HOST_TSO4)), 0);
    }

    #[test]
    fn test_check_rx_refuses_offloads_not_in_force_and_clears_flags() {
        let mut h = hdr(0, 0);
        assert_eq!(check_rx(&mut h, 0), Ok(()));
        let mut h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM as u8, 0);
        assert_eq!(check_rx(&mut h, 0), Err(BadHeader::PartialChecksum));
        assert_eq!(check_rx(&mut h, TUN_F_CSUM), Ok(()));
        assert_eq!(h[0], 1);
        let mut h = hdr(1, VIRTIO_NET_HDR_GSO_TCPV4 as u8);
        assert_eq!(
            check_rx(&mut h, TUN_F_CSUM),
            Err(BadHeader::Segmentation(1))
        );
        assert_eq!(check_rx(&mut h, TUN_F_CSUM | TUN_F_TSO4), Ok(()));
        let mut h = hdr(1, VIRTIO_NET_HDR_GSO_TCPV6 as u8);
        assert!(check_rx(&mut h, TUN_F_CSUM | TUN_F_TSO4).is_err());
        // ECN and UDP_L4 are never in force.
        for gso in [0x81u8, 5, 2, 0x7f] {
            let mut h = hdr(0, gso);
            assert_eq!(
                check_rx(&mut h, TUN_F_ALL),
                Err(BadHeader::Segmentation(gso))
            );
        }
        // DATA_VALID only with the checksum offload; unknown bits never.
        let mut h = hdr(VIRTIO_NET_HDR_F_DATA_VALID as u8 | 0x4 | 0x80, 0);
        assert_eq!(check_rx(&mut h, 0), Ok(()));
        assert_eq!(h[0], 0, "flags must be zero without GUEST_CSUM");
        let mut h = hdr(VIRTIO_NET_HDR_F_DATA_VALID as u8 | 0x4, 0);
        check_rx(&mut h, TUN_F_CSUM).unwrap();
        assert_eq!(h[0], VIRTIO_NET_HDR_F_DATA_VALID as u8);
    }

    #[test]
    fn test_check_tx_allows_only_accepted_host_offloads() {
        let host = host_offloads(bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4));
        assert_eq!(host, TUN_F_CSUM | TUN_F_TSO4);
        assert_eq!(check_tx(&hdr(1, 1), host), Ok(()));
        assert_eq!(check_tx(&hdr(1, 4), host), Err(BadHeader::Segmentation(4)));
        assert_eq!(check_tx(&hdr(1, 0), 0), Err(BadHeader::PartialChecksum));
        assert_eq!(check_tx(&hdr(0, 0), 0), Ok(()));
        assert_eq!(host_offloads(0), 0);
    }
}
