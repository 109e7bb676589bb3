//! Watches the capture interface: is it still there, is its link up, is
//! an XDP program still attached to it. Live capture asks at every control
//! tick (100 ms) and turns the changes into log lines, metrics and actions
//! (`capture::live`).
//!
//! Why polling with an rtnetlink query instead of a subscription to link
//! events: the control loop wakes every 100 ms anyway, one `RTM_GETLINK`
//! for one interface index is a single round trip, and a query cannot
//! fall behind or overflow the way an event socket's buffer can. A flap
//! shorter than a tick is not seen; it changes nothing the sensor holds
//! (the XDP attachment and the AF_XDP sockets survive a down/up; only the
//! device's removal ends them). The interface is found by name with
//! `if_nametoindex`, so a device deleted and created again under the same
//! name between two ticks shows as a new index: the one we attached to is
//! gone.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// `IFLA_XDP` (linux/if_link.h): the nested XDP attributes of a link.
const IFLA_XDP: u16 = 43;
/// `IFLA_XDP_PROG_ID` inside `IFLA_XDP`.
const IFLA_XDP_PROG_ID: u16 = 4;
/// Attribute types carry two flag bits above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
/// Receive buffer of one reply (one link's attributes are a few KiB).
const REPLY_BUF: usize = 32 << 10;

/// What `--on-interface-loss` asks for when the interface is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnInterfaceLoss {
    /// Flush every record and exit with code 1 (a supervisor such as
    /// systemd's `Restart=on-failure` starts the sensor again).
    #[default]
    Exit,
    /// Keep running and attach again when an interface of that name
    /// appears.
    Wait,
}

/// The interface's state for the metrics and the stats line.
#[derive(Debug)]
pub struct LinkCounters {
    /// 1 while the interface exists with its link up, else 0 (a gauge).
    pub up: AtomicU64,
    /// Times the link went down or the interface disappeared.
    pub losses: AtomicU64,
    /// Times capture was set up again: the XDP program re-attached after
    /// it was found missing, or everything after the interface came back.
    pub reattaches: AtomicU64,
}

impl Default for LinkCounters {
    fn default() -> Self {
        LinkCounters {
            up: AtomicU64::new(1),
            losses: AtomicU64::new(0),
            reattaches: AtomicU64::new(0),
        }
    }
}

impl LinkCounters {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) == 1
    }
}

/// One reading of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    /// Administratively up with carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub up: bool,
    /// The XDP program attached to it, by kernel id.
    pub xdp_prog: Option<u32>,
}

/// What changed since the previous reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    WentDown,
    CameUp(LinkInfo),
    /// The interface we attached to no longer exists (deleted, or deleted
    /// and created again: another index).
    Gone,
}

/// Index of the interface named `iface` in this network namespace.
pub fn ifindex(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: a valid NUL-terminated string; no other precondition.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// An rtnetlink socket for link queries.
#[derive(Debug)]
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        // SAFETY: plain socket call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A reply comes at once; never let a lost one block the control
        // loop for more than this.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid option value of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Rtnl {
            fd,
            seq: 0,
            buf: vec![0; REPLY_BUF],
        })
    }

    /// The link with index `ifindex`; `None` when there is none.
    pub fn link(&mut self, ifindex: u32) -> io::Result<Option<LinkInfo>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = [0u8; NLMSG_HDR + IFINFOMSG];
        put(&mut req, 0, &((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
        put(&mut req, 4, &libc::RTM_GETLINK.to_ne_bytes());
        put(&mut req, 6, &(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        put(&mut req, 8, &seq.to_ne_bytes());
        // ifinfomsg: family AF_UNSPEC (0), the index at offset 4.
        put(&mut req, NLMSG_HDR + 4, &ifindex.to_ne_bytes());
        // SAFETY: sending our own buffer of the given length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // Replies to an earlier, timed-out request are skipped by seq.
        for _ in 0..8 {
            // SAFETY: receiving into our own buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let reply = self.buf.get(..n as usize).unwrap_or_default();
            if let Some(r) = parse_reply(reply, seq) {
                return r;
            }
        }
        Err(io::Error::other("no rtnetlink reply to the link query"))
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The answer to request `seq` in one datagram of netlink messages;
/// `None` when it holds none.
fn parse_reply(mut b: &[u8], seq: u32) -> Option<io::Result<Option<LinkInfo>>> {
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0)? as usize;
        let kind = u16_at(b, 4)?;
        let msg_seq = u32_at(b, 8)?;
        if len < NLMSG_HDR || len > b.len() {
            return None;
        }
        let msg = b.get(NLMSG_HDR..len)?;
        if msg_seq == seq {
            if kind == libc::NLMSG_ERROR as u16 {
                let errno = -(u32_at(msg, 0)? as i32);
                return Some(match errno {
                    0 => Ok(None),
                    libc::ENODEV => Ok(None),
                    e => Err(io::Error::from_raw_os_error(e)),
                });
            }
            if kind == libc::RTM_NEWLINK {
                return Some(Ok(parse_link(msg)));
            }
        }
        b = b.get(align4(len)..).unwrap_or_default();
    }
    None
}

/// An `RTM_NEWLINK` body: `ifinfomsg`, then attributes.
fn parse_link(msg: &[u8]) -> Option<LinkInfo> {
    let ifindex = u32_at(msg, 4)?;
    let flags = u32_at(msg, 8)?;
    let up_flags = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
    let mut xdp_prog = None;
    for (kind, value) in attrs(msg.get(IFINFOMSG..)?) {
        if kind == IFLA_XDP {
            for (k, v) in attrs(value) {
                if k == IFLA_XDP_PROG_ID {
                    xdp_prog = u32_at(v, 0).filter(|&id| id != 0);
                }
            }
        }
    }
    Some(LinkInfo {
        ifindex,
        up: flags & up_flags == up_flags,
        xdp_prog,
    })
}

/// Netlink attributes (`rtattr`: length, type, value, padded to 4).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        let value = b.get(4..len)?;
        b = b.get(align4(len)..).unwrap_or_default();
        Some((kind, value))
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Follows one interface from reading to reading.
#[derive(Debug)]
pub struct LinkWatch {
    iface: String,
    rtnl: Rtnl,
    ifindex: u32,
    up: bool,
    /// A failed query was logged (logged once until one succeeds).
    query_failed: bool,
}

impl LinkWatch {
    /// Starts watching `iface`, which must exist.
    pub fn new(iface: &str) -> io::Result<(LinkWatch, LinkInfo)> {
        let mut rtnl = Rtnl::open()?;
        let info = ifindex(iface)
            .map(|i| rtnl.link(i))
            .transpose()?
            .flatten()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        Ok((
            LinkWatch {
                iface: iface.to_owned(),
                rtnl,
                ifindex: info.ifindex,
                up: info.up,
                query_failed: false,
            },
            info,
        ))
    }

    /// The interface now, when it is still the one watched.
    pub fn current(&mut self) -> Option<LinkInfo> {
        self.rtnl
            .link(self.ifindex)
            .ok()
            .flatten()
            .filter(|_| ifindex(&self.iface) == Some(self.ifindex))
    }

    /// Reads the interface; returns what changed since the last call.
    pub fn poll(&mut self) -> Option<LinkEvent> {
        if ifindex(&self.iface) != Some(self.ifindex) {
            return Some(LinkEvent::Gone);
        }
        let info = match self.rtnl.link(self.ifindex) {
            Ok(Some(i)) => i,
            Ok(None) => return Some(LinkEvent::Gone),
            Err(e) => {
                if !self.query_failed {
                    self.query_failed = true;
                    log::warn!("cannot read the state of {}: {e}", self.iface);
                }
                return None;
            }
        };
        self.query_failed = false;
        match (self.up, info.up) {
            (true, false) => {
                self.up = false;
                Some(LinkEvent::WentDown)
            }
            (false, true) => {
                self.up = true;
                Some(LinkEvent::CameUp(info))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_up() {
        let i = ifindex("lo").expect("lo exists");
        let mut r = Rtnl::open().unwrap();
        let info = r.link(i).unwrap().expect("lo answers");
        assert_eq!(info.ifindex, i);
        assert!(info.up);
        assert_eq!(info.xdp_prog, None);
    }

    #[test]
    fn a_missing_index_is_none() {
        let mut r = Rtnl::open().unwrap();
        assert_eq!(r.link(0x7fff_fff0).unwrap(), None);
        assert_eq!(ifindex("no-such-if0"), None);
        assert_eq!(ifindex("bad\0name"), None);
    }

    #[test]
    fn malformed_replies_are_no_answer() {
        assert!(parse_reply(&[], 1).is_none());
        // A header claiming more than the datagram holds.
        let mut b = vec![0u8; 20];
        put(&mut b, 0, &100u32.to_ne_bytes());
        assert!(parse_reply(&b, 0).is_none());
        // A length below the header.
        put(&mut b, 0, &4u32.to_ne_bytes());
        assert!(parse_reply(&b, 0).is_none());
        // An attribute running past its message.
        let mut m = vec![0u8; IFINFOMSG + 4];
        put(&mut m, IFINFOMSG, &200u16.to_ne_bytes());
        put(&mut m, IFINFOMSG + 2, &IFLA_XDP.to_ne_bytes());
        assert_eq!(parse_link(&m).map(|l| l.xdp_prog), Some(None));
        // A zero-length attribute does not loop forever.
        let m = vec![0u8; IFINFOMSG + 16];
        assert!(parse_link(&m).is_some());
    }

    #[test]
    fn an_attached_program_id_is_read() {
        let mut m = vec![0u8; IFINFOMSG];
        put(&mut m, 4, &7u32.to_ne_bytes());
        put(
            &mut m,
            8,
            &((libc::IFF_UP | libc::IFF_LOWER_UP) as u32).to_ne_bytes(),
        );
        // IFLA_XDP { IFLA_XDP_PROG_ID = 42 }
        m.extend_from_slice(&12u16.to_ne_bytes());
        m.extend_from_slice(&(IFLA_XDP | 0x8000).to_ne_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&IFLA_XDP_PROG_ID.to_ne_bytes());
        m.extend_from_slice(&42u32.to_ne_bytes());
        let l = parse_link(&m).unwrap();
        assert_eq!(
            l,
            LinkInfo {
                ifindex: 7,
                up: true,
                xdp_prog: Some(42)
            }
        );
    }
}
