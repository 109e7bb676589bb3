//! The XDP program from userspace: loads the object embedded at build time,
//! fills its maps from the configuration, attaches it (driver mode, falling
//! back to generic mode), registers AF_XDP sockets and reads its counters.
//!
//! The program is attached through a BPF link owned by [`XdpProgram`]: the
//! kernel detaches it when the link's file descriptor closes, which happens
//! on drop, on a panic that unwinds past it, and when the process is killed.

use std::os::fd::AsRawFd;

use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use log::{info, warn};
use sensor_common::flowhash::FlowHashKey;
use sensor_common::maps::{
    self, ConfigSlot, Counter, GLOBAL_FLOW_HASH_KEY, GLOBAL_WRITE_FLOW_HASH, NON_SMTP_DROP,
    NON_SMTP_PASS, PORT_WATCHED, PROGRAM_NAME,
};

use super::error::CaptureError;

/// The XDP program object built by `build.rs` (empty when the eBPF
/// toolchain was missing at build time).
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-xdp"));

/// True when this binary carries a real XDP program.
pub fn program_embedded() -> bool {
    !XDP_OBJECT.is_empty()
}

/// Which XDP attach mode to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Driver (native) mode, falling back to generic mode.
    #[default]
    Auto,
    /// Driver (native) mode only.
    Drv,
    /// Generic (SKB) mode only.
    Skb,
}

/// What the XDP program does with frames that are not SMTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NonSmtpAction {
    /// Give them to the kernel stack (the host keeps working normally).
    #[default]
    Pass,
    /// Drop them: for a dedicated tap/mirror port.
    Drop,
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Driver,
    Generic,
}

impl AttachedMode {
    /// Operator-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Driver => "driver",
            AttachedMode::Generic => "generic",
        }
    }
}

/// Settings the program is loaded with.
#[derive(Clone, Debug)]
pub struct XdpSettings {
    pub smtp_ports: Vec<u16>,
    pub non_smtp: NonSmtpAction,
    pub ebpf_log: bool,
    /// Put the flow hash with this key in front of every SMTP frame (for
    /// capture threads that hand frames to other workers); `None`: skip it.
    pub flow_hash: Option<FlowHashKey>,
}

/// Per-CPU XDP counters summed over CPUs, in [`Counter::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters(pub [u64; Counter::COUNT as usize]);

impl XdpCounters {
    /// Value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.index() as usize).copied().unwrap_or(0)
    }
}

/// The loaded (and, after [`XdpProgram::attach`], attached) XDP program.
pub struct XdpProgram {
    ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    attached: Option<(String, AttachedMode)>,
}

impl XdpProgram {
    /// Loads the embedded program into the kernel and fills its maps.
    pub fn load(settings: &XdpSettings) -> Result<Self, CaptureError> {
        if !program_embedded() {
            return Err(CaptureError::ProgramNotBuilt);
        }
        let key = settings.flow_hash.unwrap_or_default();
        let write_hash = u32::from(settings.flow_hash.is_some());
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_FLOW_HASH_KEY, &key, true)
            .override_global(GLOBAL_WRITE_FLOW_HASH, &write_hash, true)
            .load(XDP_OBJECT)
            .map_err(|e| {
                let errno = match &e {
                    aya::EbpfError::MapError(aya::maps::MapError::CreateError {
                        io_error, ..
                    }) => io_error.raw_os_error(),
                    _ => None,
                };
                CaptureError::permission_or(
                    errno,
                    "creating BPF maps",
                    CaptureError::Load(Box::new(e)),
                )
            })?;
        // Take the log ring buffer before loading the program: the reader
        // must exist for the whole run, and only when asked for.
        let logger = if settings.ebpf_log {
            Some(
                aya_log::EbpfLogger::init(&mut ebpf)
                    .map_err(|e| CaptureError::Logger(Box::new(e)))?,
            )
        } else {
            None
        };
        let mut this = XdpProgram {
            ebpf,
            logger,
            attached: None,
        };
        this.fill_maps(settings)?;
        let prog = this.program_mut()?;
        prog.load().map_err(|e| {
            let errno = match &e {
                aya::programs::ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
                _ => None,
            };
            CaptureError::permission_or(
                errno,
                "loading the XDP program",
                CaptureError::Verifier(Box::new(e)),
            )
        })?;
        Ok(this)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, CaptureError> {
        let missing = CaptureError::MissingObject {
            kind: "program",
            name: PROGRAM_NAME,
        };
        let prog = self.ebpf.program_mut(PROGRAM_NAME).ok_or(missing)?;
        prog.try_into().map_err(|_| CaptureError::MissingObject {
            kind: "XDP program",
            name: PROGRAM_NAME,
        })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, CaptureError> {
        self.ebpf
            .map_mut(name)
            .ok_or(CaptureError::MissingObject { kind: "map", name })
    }

    fn fill_maps(&mut self, s: &XdpSettings) -> Result<(), CaptureError> {
        let map_err = |name| {
            move |source| CaptureError::Map {
                name,
                source: Box::new(source),
            }
        };
        let mut ports: Array<&mut MapData, u8> =
            Array::try_from(self.map_mut(maps::SMTP_PORTS)?).map_err(map_err(maps::SMTP_PORTS))?;
        for &p in &s.smtp_ports {
            ports
                .set(u32::from(p), PORT_WATCHED, 0)
                .map_err(map_err(maps::SMTP_PORTS))?;
        }
        let mut config: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut(maps::CONFIG)?).map_err(map_err(maps::CONFIG))?;
        let action = match s.non_smtp {
            NonSmtpAction::Pass => NON_SMTP_PASS,
            NonSmtpAction::Drop => NON_SMTP_DROP,
        };
        config
            .set(ConfigSlot::NonSmtpAction.index(), action, 0)
            .map_err(map_err(maps::CONFIG))?;
        config
            .set(ConfigSlot::Log.index(), u32::from(s.ebpf_log), 0)
            .map_err(map_err(maps::CONFIG))?;
        Ok(())
    }

    /// Attaches to `iface`; `Auto` tries driver mode, then generic mode.
    pub fn attach(
        &mut self,
        iface: &str,
        choice: XdpModeChoice,
    ) -> Result<AttachedMode, CaptureError> {
        let attempts: &[AttachedMode] = match choice {
            XdpModeChoice::Auto => &[AttachedMode::Driver, AttachedMode::Generic],
            XdpModeChoice::Drv => &[AttachedMode::Driver],
            XdpModeChoice::Skb => &[AttachedMode::Generic],
        };
        let mut last = None;
        for &mode in attempts {
            let flags = match mode {
                AttachedMode::Driver => XdpMode::Driver,
                AttachedMode::Generic => XdpMode::Skb,
            };
            let prog = self.program_mut()?;
            match prog.attach(iface, flags) {
                Ok(_link) => {
                    info!(
                        "XDP program attached to {iface} in {} mode{}",
                        mode.as_str(),
                        if mode == AttachedMode::Generic {
                            " (SKB; slower than driver mode)"
                        } else {
                            " (native)"
                        }
                    );
                    self.attached = Some((iface.to_string(), mode));
                    return Ok(mode);
                }
                Err(aya::programs::ProgramError::UnknownInterface { name }) => {
                    return Err(CaptureError::InterfaceNotFound(name));
                }
                Err(e) => {
                    if attempts.len() > 1 && mode == AttachedMode::Driver {
                        warn!(
                            "XDP driver mode not available on {iface} ({e}); trying generic (SKB) mode"
                        );
                    }
                    last = Some((mode, e));
                }
            }
        }
        let (mode, source) = last.ok_or(CaptureError::Option("no XDP mode to try".into()))?;
        Err(CaptureError::Attach {
            iface: iface.to_string(),
            mode: mode.as_str(),
            hint: match mode {
                AttachedMode::Driver => "try --xdp-mode skb",
                AttachedMode::Generic => {
                    "check that no other XDP program is attached (`ip link show`) and that you are root"
                }
            },
            source: Box::new(source),
        })
    }

    /// The program's kernel id (what the interface reports as attached).
    pub fn id(&mut self) -> Option<u32> {
        self.program_mut().ok()?.info().ok().map(|i| i.id())
    }

    /// Puts the AF_XDP socket `fd` into the redirect map for rx `queue`.
    pub fn register_socket(&mut self, queue: u32, fd: &impl AsRawFd) -> Result<(), CaptureError> {
        let mut xsks: XskMap<&mut MapData> =
            XskMap::try_from(self.map_mut(maps::XSKS)?).map_err(|source| CaptureError::Map {
                name: maps::XSKS,
                source: Box::new(source),
            })?;
        xsks.set(queue, fd.as_raw_fd(), 0)
            .map_err(|source| CaptureError::Map {
                name: maps::XSKS,
                source: Box::new(source),
            })
    }

    /// The counters summed over all CPUs.
    pub fn counters(&self) -> Result<XdpCounters, CaptureError> {
        let map = self
            .ebpf
            .map(maps::COUNTERS)
            .ok_or(CaptureError::MissingObject {
                kind: "map",
                name: maps::COUNTERS,
            })?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| CaptureError::Map {
                name: maps::COUNTERS,
                source: Box::new(source),
            })?;
        let mut out = XdpCounters::default();
        for (slot, c) in out.0.iter_mut().zip(Counter::ALL) {
            let per_cpu = arr.get(&c.index(), 0).map_err(|source| CaptureError::Map {
                name: maps::COUNTERS,
                source: Box::new(source),
            })?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(out)
    }

    /// Forwards pending eBPF log records (`--ebpf-log`) to the sensor's log.
    pub fn flush_log(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Detaches the program (also done on drop) and logs it.
    pub fn detach(mut self) {
        self.flush_log();
        if let Some((iface, _)) = self.attached.take() {
            drop(self.ebpf);
            info!("XDP program detached from {iface}");
        }
    }
}
