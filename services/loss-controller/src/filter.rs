//! The eBPF loss filter in the kernel: loading it, attaching it at an interface's ingress,
//! writing its config map, reading its counters, and taking it away again. I/O by nature; the
//! decisions about what to write live in `loss_model` and `controller`.
//!
//! Privileges: loading a tc classifier needs CAP_BPF and CAP_NET_ADMIN (the program type is a
//! "net admin" type); attaching it and adding or removing the clsact qdisc need CAP_NET_ADMIN.
//! On this kernel (6.x, memcg-accounted BPF memory) no memlock rlimit raise, CAP_PERFMON or
//! CAP_SYS_ADMIN is needed, provided the classifier avoids what the verifier reserves for
//! CAP_PERFMON (variable-offset packet pointer arithmetic; see ebpf/keymash_loss.bpf.c). Without
//! CAP_PERFMON aya loads the program without a name, so our filter is found by its tc priority.
//! tests/capabilities.rs proves all this as an unprivileged user holding only those two caps.
//!
//! Attachment is deliberately classic netlink tc (a `tc filter` under clsact), not a TCX link,
//! so the filter behaves the same on the exhibit's Debian 12 kernel (6.1, no TCX) and here, and a
//! crashed controller's filter stays visible to `tc filter show` (at priority
//! [`FILTER_PRIORITY`]) and is replaced by the next run ([`remove_stale_filters`]). What keeps a crashed controller from leaving loss behind is the
//! deadline in the config map, not the process lifetime.

use std::process::Command;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::links::Link as _;
use aya::programs::tc::{
    self, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions, TcError, TcHandle,
};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{maps::MapError, Ebpf, EbpfError};
use nix::errno::Errno;

use crate::layout::{
    ConfigMapValue, CountersMapValue, GeStateMapValue, LossConfigRecord, LossCounters, CONFIG_MAP,
    COUNTERS_MAP, GE_STATE_MAP, ONLY_KEY, PROGRAM_NAME,
};

/// The compiled classifier, built from ebpf/keymash_loss.bpf.c by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keymash_loss.bpf.o"));

/// `TC_ACT_OK`: the packet goes on.
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`: the packet is dropped.
pub const TC_ACT_SHOT: u32 = 2;

/// What the classifier decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

/// Errors of the filter's kernel side, named for what failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("loading the eBPF object and creating its maps failed: {0}")]
    LoadObject(#[source] EbpfError),
    #[error("the eBPF object has no program named {PROGRAM_NAME}")]
    ProgramMissing,
    #[error("program {PROGRAM_NAME} is not a tc classifier: {0}")]
    NotAClassifier(#[source] ProgramError),
    #[error("the kernel refused program {PROGRAM_NAME} (verifier or privileges): {0}")]
    LoadProgram(#[source] ProgramError),
    #[error("the eBPF object has no map named {0}")]
    MapMissing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("adding the clsact qdisc to {interface}: {source}")]
    AddClsact {
        interface: String,
        #[source]
        source: TcError,
    },
    #[error("attaching {PROGRAM_NAME} at the ingress of {interface}: {source}")]
    Attach {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("removing a stale {PROGRAM_NAME} filter from {interface}: {source}")]
    RemoveStale {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("detaching {PROGRAM_NAME} from {interface}: {source}")]
    Detach {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("removing the clsact qdisc from {interface}: {reason}")]
    RemoveClsact { interface: String, reason: String },
    #[error("running {PROGRAM_NAME} on a test packet (BPF_PROG_TEST_RUN): {0}")]
    TestRun(#[source] ProgramError),
    #[error("reading the kernel's information about {PROGRAM_NAME}: {0}")]
    ProgramInfo(#[source] ProgramError),
    #[error("no BPF program with id {0} is loaded")]
    ProgramNotLoaded(u32),
    #[error("{PROGRAM_NAME} returned {0}, which is neither TC_ACT_OK nor TC_ACT_SHOT")]
    UnexpectedReturn(u32),
}

/// The classifier loaded into the kernel (verified), with its maps; not attached anywhere.
pub struct LossFilter {
    ebpf: Ebpf,
    config: Array<MapData, ConfigMapValue>,
    counters: PerCpuArray<MapData, CountersMapValue>,
    ge_state: Array<MapData, GeStateMapValue>,
}

impl std::fmt::Debug for LossFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // aya's typed maps have no Debug; the program handle says what this is.
        f.debug_struct("LossFilter")
            .field("ebpf", &self.ebpf)
            .finish_non_exhaustive()
    }
}

impl LossFilter {
    /// Loads the embedded object and the classifier into the kernel. The fresh config map is
    /// all zeros: model PASS, port 0, deadline 0, so the program drops nothing until configured.
    pub fn load() -> Result<Self, FilterError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(FilterError::LoadObject)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(FilterError::ProgramMissing)?
            .try_into()
            .map_err(FilterError::NotAClassifier)?;
        program.load().map_err(FilterError::LoadProgram)?;
        let config = take_map(&mut ebpf, CONFIG_MAP)?;
        let counters = take_map(&mut ebpf, COUNTERS_MAP)?;
        let ge_state = take_map(&mut ebpf, GE_STATE_MAP)?;
        Ok(LossFilter {
            ebpf,
            config,
            counters,
            ge_state,
        })
    }

    fn program(&mut self) -> Result<&mut SchedClassifier, FilterError> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(FilterError::ProgramMissing)?
            .try_into()
            .map_err(FilterError::NotAClassifier)
    }

    /// Replaces the config the filter applies from its next packet on (one map update syscall).
    pub fn write_config(&mut self, record: &LossConfigRecord) -> Result<(), FilterError> {
        self.config
            .set(ONLY_KEY, record.to_map_value(), 0)
            .map_err(|source| FilterError::Map {
                name: CONFIG_MAP,
                source,
            })
    }

    /// The config the filter applies now.
    pub fn read_config(&self) -> Result<LossConfigRecord, FilterError> {
        read_config_map(&self.config)
    }

    /// The kernel's counters for the video flow, summed over all CPUs.
    pub fn counters(&self) -> Result<LossCounters, FilterError> {
        sum_counters_map(&self.counters)
    }

    /// Puts the Gilbert-Elliott chain back into the good state (when a model starts).
    pub fn reset_gilbert_elliott_state(&mut self) -> Result<(), FilterError> {
        self.ge_state
            .set(ONLY_KEY, 0, 0)
            .map_err(|source| FilterError::Map {
                name: GE_STATE_MAP,
                source,
            })
    }

    /// Runs the classifier once on `packet` (an Ethernet frame) without attaching it
    /// (BPF_PROG_TEST_RUN). Counters and the Gilbert-Elliott state change as for a real packet.
    pub fn test_run(&mut self, packet: &[u8]) -> Result<Verdict, FilterError> {
        self.test_run_timed(packet, 1).map(|(verdict, _)| verdict)
    }

    /// Runs the classifier `repeat` times on `packet` inside one BPF_PROG_TEST_RUN and returns
    /// the verdict and the kernel-measured mean time per run (for benchmarks).
    pub fn test_run_timed(
        &mut self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(Verdict, std::time::Duration), FilterError> {
        let options = TestRunOptions {
            data_in: Some(packet),
            repeat,
            ..TestRunOptions::default()
        };
        let result = self
            .program()?
            .test_run(options)
            .map_err(FilterError::TestRun)?;
        let verdict = match result.return_value {
            TC_ACT_OK => Verdict::Pass,
            TC_ACT_SHOT => Verdict::Drop,
            other => return Err(FilterError::UnexpectedReturn(other)),
        };
        Ok((verdict, result.duration))
    }

    /// Cumulative run time and run count the kernel recorded for the program (only while
    /// `kernel.bpf_stats_enabled` is 1 or a BPF_ENABLE_STATS fd is open).
    pub fn run_stats(&mut self) -> Result<(std::time::Duration, u64), FilterError> {
        let info = self.program()?.info().map_err(FilterError::ProgramInfo)?;
        Ok((info.run_time(), info.run_count()))
    }
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, FilterError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(FilterError::MapMissing(name))?;
    M::try_from(map).map_err(|source| FilterError::Map { name, source })
}

/// tc priority ("pref") of the loss filter at the ingress hook, reserved for keymash ("km" in
/// ASCII). Together with [`FILTER_HANDLE`] it identifies our filter without relying on program
/// names: aya 0.14 decides whether the kernel supports program names by loading a tracepoint
/// program, which needs CAP_PERFMON; under the controller's CAP_BPF + CAP_NET_ADMIN that probe
/// fails and the program is loaded without a name.
pub const FILTER_PRIORITY: u16 = 0x6b6d;
/// tc handle of the loss filter within [`FILTER_PRIORITY`].
pub const FILTER_HANDLE: TcHandle = TcHandle::new(0, 1);

/// Removes the loss filter an earlier run left at `interface`'s ingress when it did not stop
/// cleanly (crash, kill -9): the filter at keymash's reserved priority and handle. Returns
/// whether there was one.
pub fn remove_stale_filters(interface: &str) -> Result<bool, FilterError> {
    let failed = |source| FilterError::RemoveStale {
        interface: interface.to_owned(),
        source,
    };
    let link = SchedClassifierLink::attached(
        interface,
        TcAttachType::Ingress,
        FILTER_PRIORITY,
        FILTER_HANDLE,
        None,
    )
    .map_err(|e| failed(ProgramError::from(TcError::IoError(e))))?;
    match link.detach() {
        Ok(()) => Ok(true),
        // ENOENT: no filter there; EINVAL: no clsact qdisc at all, so nothing of ours either.
        Err(ProgramError::NetlinkError(e)) if matches!(e.raw_os_error(), Some(code) if code == Errno::ENOENT as i32 || code == Errno::EINVAL as i32) => {
            Ok(false)
        }
        Err(source) => Err(failed(source)),
    }
}

/// The filter attached at an interface's ingress. Dropping it without [`detach`] still
/// detaches the filter (aya removes its links on drop), but [`detach`] also removes the clsact
/// qdisc when this controller added it and reports failures.
///
/// [`detach`]: AttachedFilter::detach
#[derive(Debug)]
pub struct AttachedFilter {
    filter: LossFilter,
    interface: String,
    link: Option<SchedClassifierLinkId>,
    created_clsact: bool,
}

impl AttachedFilter {
    /// Adds clsact to `interface` if it has none, removes a stale filter of ours, and attaches.
    ///
    /// Write a config before or right after attaching: a fresh map passes everything.
    pub fn attach(mut filter: LossFilter, interface: &str) -> Result<Self, FilterError> {
        let created_clsact = match tc::qdisc_add_clsact(interface) {
            Ok(()) => true,
            Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(Errno::EEXIST as i32) => {
                false
            }
            Err(TcError::AlreadyAttached) => false,
            Err(source) => {
                return Err(FilterError::AddClsact {
                    interface: interface.to_owned(),
                    source,
                })
            }
        };
        let stale = remove_stale_filters(interface)?;
        if stale {
            log::warn!("removed a stale {PROGRAM_NAME} filter from {interface} (earlier run did not stop cleanly)");
        }
        let options = TcAttachOptions::Netlink(NlOptions {
            priority: FILTER_PRIORITY,
            handle: FILTER_HANDLE,
            ..NlOptions::default()
        });
        let link = filter
            .program()?
            .attach_with_options(interface, TcAttachType::Ingress, options)
            .map_err(|source| FilterError::Attach {
                interface: interface.to_owned(),
                source,
            })?;
        Ok(AttachedFilter {
            filter,
            interface: interface.to_owned(),
            link: Some(link),
            created_clsact,
        })
    }

    pub fn filter(&self) -> &LossFilter {
        &self.filter
    }

    pub fn filter_mut(&mut self) -> &mut LossFilter {
        &mut self.filter
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Whether this controller added the clsact qdisc (and so removes it again on detach).
    pub fn created_clsact(&self) -> bool {
        self.created_clsact
    }

    /// Detaches the filter and, if this controller added it, the clsact qdisc.
    pub fn detach(mut self) -> Result<(), FilterError> {
        let interface = self.interface.clone();
        if let Some(link) = self.link.take() {
            self.filter
                .program()?
                .detach(link)
                .map_err(|source| FilterError::Detach {
                    interface: interface.clone(),
                    source,
                })?;
        }
        if self.created_clsact {
            remove_clsact(&interface)?;
        }
        Ok(())
    }
}

/// Removes the clsact qdisc with `tc` (aya 0.14 can add clsact but not delete it).
fn remove_clsact(interface: &str) -> Result<(), FilterError> {
    let failed = |reason: String| FilterError::RemoveClsact {
        interface: interface.to_owned(),
        reason,
    };
    let output = Command::new("tc")
        .args(["qdisc", "del", "dev", interface, "clsact"])
        .output()
        .map_err(|e| failed(format!("could not run tc: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// The maps of a loss filter that another process loaded (the running controller's), opened by
/// the kernel id of its program (as `tc filter show` and `bpftool prog` print it). Opening BPF
/// objects by id needs CAP_SYS_ADMIN: this is for tests, benchmarks and operator tools run as
/// root, not for the controller itself.
pub struct ForeignFilter {
    config: Array<MapData, ConfigMapValue>,
    counters: PerCpuArray<MapData, CountersMapValue>,
}

impl std::fmt::Debug for ForeignFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignFilter").finish_non_exhaustive()
    }
}

impl ForeignFilter {
    pub fn open(program_id: u32) -> Result<Self, FilterError> {
        let info = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == program_id)
            .ok_or(FilterError::ProgramNotLoaded(program_id))?;
        let map_ids = info
            .map_ids()
            .map_err(FilterError::ProgramInfo)?
            .unwrap_or_default();
        let (mut config, mut counters) = (None, None);
        for map_id in map_ids {
            let map = MapData::from_id(map_id).map_err(|source| FilterError::Map {
                name: CONFIG_MAP,
                source,
            })?;
            let name = map
                .info()
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_default();
            if name == CONFIG_MAP {
                config = Some(
                    Array::try_from(aya::maps::Map::Array(map)).map_err(|source| {
                        FilterError::Map {
                            name: CONFIG_MAP,
                            source,
                        }
                    })?,
                );
            } else if name == COUNTERS_MAP {
                counters = Some(
                    PerCpuArray::try_from(aya::maps::Map::PerCpuArray(map)).map_err(|source| {
                        FilterError::Map {
                            name: COUNTERS_MAP,
                            source,
                        }
                    })?,
                );
            }
        }
        Ok(ForeignFilter {
            config: config.ok_or(FilterError::MapMissing(CONFIG_MAP))?,
            counters: counters.ok_or(FilterError::MapMissing(COUNTERS_MAP))?,
        })
    }

    /// The config the filter applies now (one map lookup).
    pub fn config(&self) -> Result<LossConfigRecord, FilterError> {
        read_config_map(&self.config)
    }

    /// The filter's counters summed over CPUs.
    pub fn counters(&self) -> Result<LossCounters, FilterError> {
        sum_counters_map(&self.counters)
    }
}

/// The config record in the filter's config map.
fn read_config_map(map: &Array<MapData, ConfigMapValue>) -> Result<LossConfigRecord, FilterError> {
    map.get(&ONLY_KEY, 0)
        .map(LossConfigRecord::from_map_value)
        .map_err(|source| FilterError::Map {
            name: CONFIG_MAP,
            source,
        })
}

/// The per-CPU counters of the filter's counter map, summed.
fn sum_counters_map(
    map: &PerCpuArray<MapData, CountersMapValue>,
) -> Result<LossCounters, FilterError> {
    let per_cpu = map.get(&ONLY_KEY, 0).map_err(|source| FilterError::Map {
        name: COUNTERS_MAP,
        source,
    })?;
    Ok(per_cpu
        .iter()
        .copied()
        .map(LossCounters::from_map_value)
        .fold(LossCounters::default(), core::ops::Add::add))
}

/// The counters of the loss filter whose program has kernel id `program_id` (see [`ForeignFilter`]).
pub fn counters_of_program(program_id: u32) -> Result<LossCounters, FilterError> {
    ForeignFilter::open(program_id)?.counters()
}

/// The config of the loss filter whose program has kernel id `program_id` (see [`ForeignFilter`]).
pub fn config_of_program(program_id: u32) -> Result<LossConfigRecord, FilterError> {
    ForeignFilter::open(program_id)?.config()
}
