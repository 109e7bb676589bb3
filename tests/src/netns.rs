//! Network namespaces and veth pairs for the live tests, removed on drop
//! (also when the test fails), plus the probes the tests use: is an XDP
//! program attached, and which frames did the kernel stack receive.
//!
//! Everything stays inside the namespaces created here; addresses come from
//! 198.18.0.0/15 and 2001:db8::/32 and are never routed anywhere.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Panics unless the process runs as root: the live tests must fail, not
/// skip, where they cannot run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "live XDP tests need root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN for namespaces); \
         run them via `sudo cargo xtask test`"
    );
}

/// Runs `cmd args…`, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}; install it (`cargo xtask setup`)"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair with several queues on each end:
/// the sensor attaches to `sensor_if` in `sensor_ns`; traffic is replayed
/// into `peer_if` in `peer_ns`.
#[derive(Debug)]
pub struct VethPair {
    pub sensor_ns: String,
    pub peer_ns: String,
    pub sensor_if: String,
    pub peer_if: String,
}

impl VethPair {
    /// Creates the namespaces and the pair; `tag` (a few letters) keeps the
    /// names of concurrently running tests apart.
    pub fn create(tag: &str, queues: u32) -> Self {
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let pair = VethPair {
            sensor_ns: format!("sst-{id}-s"),
            peer_ns: format!("sst-{id}-p"),
            // Interface names are limited to 15 bytes.
            sensor_if: format!("vs{id}"),
            peer_if: format!("vp{id}"),
        };
        assert!(pair.sensor_if.len() <= 15, "tag too long: {tag}");
        // From here on, drop removes whatever exists.
        run("ip", &["netns", "add", &pair.sensor_ns]);
        run("ip", &["netns", "add", &pair.peer_ns]);
        pair.add_link(queues);
        pair
    }

    /// Creates the veth pair between the two namespaces, addressed and up.
    fn add_link(&self, queues: u32) {
        let q = queues.to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                &self.sensor_if,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
                "netns",
                &self.sensor_ns,
                "type",
                "veth",
                "peer",
                "name",
                &self.peer_if,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
                "netns",
                &self.peer_ns,
            ],
        );
        for (ns, dev, v4, v6) in [
            (
                &self.sensor_ns,
                &self.sensor_if,
                "198.18.0.1/24",
                "2001:db8::1/64",
            ),
            (
                &self.peer_ns,
                &self.peer_if,
                "198.18.0.2/24",
                "2001:db8::2/64",
            ),
        ] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
            run("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// Deletes the veth pair (both ends); the namespaces stay.
    pub fn delete_link(&self) {
        run(
            "ip",
            &["-n", &self.sensor_ns, "link", "del", &self.sensor_if],
        );
    }

    /// Creates the pair again under the same names (after
    /// [`VethPair::delete_link`]).
    pub fn recreate_link(&self, queues: u32) {
        self.add_link(queues);
    }

    /// `ip link set <sensor_if> up|down` in the sensor's namespace.
    pub fn set_sensor_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        run(
            "ip",
            &["-n", &self.sensor_ns, "link", "set", &self.sensor_if, state],
        );
    }

    /// `ip netns exec <sensor_ns> …` as a command to configure and spawn.
    pub fn sensor_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.sensor_ns, program]);
        c
    }

    /// `ip netns exec <peer_ns> …`.
    pub fn peer_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.peer_ns, program]);
        c
    }

    /// True when an XDP program (any mode) is attached to the sensor end.
    pub fn xdp_attached(&self) -> bool {
        let out = run(
            "ip",
            &[
                "-n",
                &self.sensor_ns,
                "-d",
                "link",
                "show",
                "dev",
                &self.sensor_if,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("xdp") || text.contains("prog/")
    }

    /// Starts counting frames the sensor end's kernel stack receives (an
    /// AF_PACKET socket sees frames only after XDP passed them) for which
    /// `pred` holds. Stop with [`StackProbe::finish`].
    pub fn stack_probe(&self, pred: impl Fn(&[u8]) -> bool + Send + 'static) -> StackProbe {
        let ns_path = format!("/run/netns/{}", self.sensor_ns);
        let ifname = self.sensor_if.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let (s2, r2) = (Arc::clone(&stop), Arc::clone(&ready));
        let handle = std::thread::spawn(move || probe_thread(&ns_path, &ifname, &s2, &r2, pred));
        while !ready.load(Ordering::Acquire) && !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        StackProbe {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it (and so the pair).
        for ns in [&self.sensor_ns, &self.peer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A running AF_PACKET counter (see [`VethPair::stack_probe`]).
pub struct StackProbe {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl StackProbe {
    /// Stops the probe and returns the number of matching frames.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(n)) => n,
            Some(Err(e)) => std::panic::resume_unwind(e),
            None => 0,
        }
    }
}

impl Drop for StackProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn probe_thread(
    ns_path: &str,
    ifname: &str,
    stop: &AtomicBool,
    ready: &AtomicBool,
    pred: impl Fn(&[u8]) -> bool,
) -> u64 {
    let ns = File::open(ns_path).unwrap_or_else(|e| panic!("open {ns_path}: {e}"));
    // SAFETY: setns on this thread only (a dedicated thread), valid fd.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns {ns_path}: {}",
        std::io::Error::last_os_error()
    );
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket call; result checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    let cname = std::ffi::CString::new(ifname).expect("interface name");
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert!(ifindex > 0, "interface {ifname} not in {ns_path}");
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: fd valid, sll properly sized.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid option value of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    ready.store(true, Ordering::Release);
    let mut buf = vec![0u8; 65_536];
    let mut count = 0u64;
    // Keep reading a little after stop so frames already queued are seen.
    let mut quiet_after_stop = 0;
    loop {
        // SAFETY: zeroed sockaddr_ll is valid output storage.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buffer and address storage valid for the given sizes.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            if stop.load(Ordering::Acquire) {
                quiet_after_stop += 1;
                if quiet_after_stop >= 2 {
                    break;
                }
            }
            continue;
        }
        let frame = buf.get(..n as usize).unwrap_or(&[]);
        if from.sll_pkttype != libc::PACKET_OUTGOING && pred(frame) {
            count += 1;
        }
    }
    // SAFETY: closing our own fd once.
    unsafe { libc::close(fd) };
    count
}
