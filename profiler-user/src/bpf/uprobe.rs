//! Uprobes attached with our own two syscalls: `perf_event_open` on the kernel's uprobe PMU
//! (which registers the uprobe and installs its breakpoint in the target), then a BPF link from
//! the program to that event (which carries the probe's cookie). aya attaches through a `&mut`
//! program, one probe after the other; here any number of threads attach at once, each with its
//! own copy of the program's fd, and the probe's fds are owned by the [`UprobeLink`].

use std::{
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// `perf_event_attr` up to `config2` (`PERF_ATTR_SIZE_VER1`): the kernel reads the fields a
/// uprobe needs and takes the rest as zero.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// For the uprobe PMU: a pointer to the file's path.
    config1: u64,
    /// For the uprobe PMU: the probe's offset in the file.
    config2: u64,
}

/// `bpf_attr` for `BPF_LINK_CREATE` on a perf event: the program, the event, the cookie.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    bpf_cookie: u64,
}

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PERF_EVENT: u32 = 41;

const PMU_DIR: &str = "/sys/bus/event_source/devices/uprobe";

/// The kernel's uprobe PMU: its perf type and the config bit that asks for a return probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UprobePmu {
    kind: u32,
    retprobe_bit: u32,
}

impl UprobePmu {
    /// Reads the PMU's description from sysfs.
    pub(crate) fn read() -> io::Result<Self> {
        let invalid = |what: &str, text: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{PMU_DIR}/{what}: unexpected {text:?}"),
            )
        };
        let kind = fs::read_to_string(format!("{PMU_DIR}/type"))?;
        let kind = kind.trim().parse().map_err(|_| invalid("type", &kind))?;
        // "config:0": the bit of `config` that makes a return probe.
        let format = fs::read_to_string(format!("{PMU_DIR}/format/retprobe"))?;
        let retprobe_bit = format
            .trim()
            .strip_prefix("config:")
            .and_then(|b| b.parse().ok())
            .filter(|b| *b < 64)
            .ok_or_else(|| invalid("format/retprobe", &format))?;
        Ok(Self { kind, retprobe_bit })
    }
}

/// What a probe is attached to: a file, an offset in it, and the one process it fires in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbePoint<'a> {
    pub path: &'a Path,
    pub offset: u64,
    pub pid: u32,
    /// A return probe (uretprobe) rather than an entry probe.
    pub ret: bool,
    /// What `bpf_get_attach_cookie` returns in the program.
    pub cookie: u64,
}

/// An attached uprobe. Dropping it detaches it: the link is closed first, then the event (which
/// unregisters the uprobe; the kernel waits for a grace period there).
#[derive(Debug)]
pub(crate) struct UprobeLink {
    // Field order is drop order.
    _link: OwnedFd,
    _event: OwnedFd,
}

/// Attaches `program` (a loaded kprobe-type program) at `point`.
pub(crate) fn attach(
    pmu: UprobePmu,
    program: BorrowedFd<'_>,
    point: ProbePoint<'_>,
) -> io::Result<UprobeLink> {
    let event = open_event(pmu, point)?;
    let link_attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: event.as_raw_fd() as u32,
        attach_type: BPF_PERF_EVENT,
        flags: 0,
        bpf_cookie: point.cookie,
    };
    // SAFETY: `link_attr` is the BPF_LINK_CREATE part of `bpf_attr` for a perf event, and its
    // size is passed with it; the kernel reads nothing beyond it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &link_attr as *const LinkCreateAttr,
            size_of::<LinkCreateAttr>() as libc::c_uint,
        )
    };
    let link = owned_fd(fd)?;
    Ok(UprobeLink {
        _link: link,
        _event: event,
    })
}

/// Opens the perf event of a uprobe at `point` (the cookie aside): this registers the uprobe,
/// and the kernel analyzes the instruction there and installs the breakpoint when the file is
/// mapped in the process.
fn open_event(pmu: UprobePmu, point: ProbePoint<'_>) -> io::Result<OwnedFd> {
    let path = CString::new(point.path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let attr = PerfEventAttr {
        kind: pmu.kind,
        size: size_of::<PerfEventAttr>() as u32,
        config: if point.ret { 1 << pmu.retprobe_bit } else { 0 },
        config1: path.as_ptr() as u64,
        config2: point.offset,
        ..Default::default()
    };
    let pid = libc::pid_t::try_from(point.pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: `attr` is a valid perf_event_attr prefix whose `size` says how long it is, and
    // `config1` points to a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    owned_fd(fd)
}

/// A new fd returned by a syscall, owned; or the syscall's error.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the syscall just returned this fd, open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Threads that attach at once: the kernel serializes part of each registration, but the waits
/// (for a grace period, for the target's mm) overlap.
const ATTACH_THREADS: usize = 16;

/// Attaches `program` at every point, from several threads at once; one result per point, in
/// order.
pub(crate) fn attach_all(
    pmu: UprobePmu,
    program: BorrowedFd<'_>,
    points: &[ProbePoint<'_>],
) -> Vec<io::Result<UprobeLink>> {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<io::Result<UprobeLink>>>> =
        Mutex::new(points.iter().map(|_| None).collect());
    let threads = ATTACH_THREADS.min(points.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(point) = points.get(i) else { break };
                    let result = attach(pmu, program, *point);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("not attached"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel refuses exactly the instructions placement says it refuses: each is
    /// written to a file mapped executable here, and a uprobe on it is opened for this process
    /// (the kernel analyzes the instruction then). Needs root; skipped otherwise.
    #[test]
    fn the_running_kernel_refuses_what_placement_says() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let Some(pmu) = UprobePmu::read().ok().filter(|_| root) else {
            eprintln!("skipped: needs root and the uprobe PMU");
            return;
        };
        // Few: each open waits for the kernel's grace periods. The table's unit tests hold the
        // rest, each probed once by hand on Linux 6.18.
        let cases: &[&[u8]] = &[
            &[0xf0, 0xff, 0x0f],                   // lock decl [rdi]: refused
            &[0x2e, 0x74, 0x00],                   // cs je: refused
            &[0x64, 0x74, 0x00],                   // fs je: accepted
            &[0x0f, 0x05],                         // syscall: accepted (0x0f is a good first byte)
            &[0xc5, 0xfe, 0x6f, 0x07],             // vmovdqu ymm0, [rdi]: refused (VEX opcode 6f)
            &[0x62, 0xf1, 0x7d, 0x48, 0x7f, 0x07], // vmovdqa32 [rdi], zmm0: accepted
        ];
        // One case per 16 bytes, nops between.
        let mut code = vec![0x90u8; 4096];
        for (i, bytes) in cases.iter().enumerate() {
            code[i * 16..i * 16 + bytes.len()].copy_from_slice(bytes);
        }
        let path = std::env::temp_dir().join(format!("profiler-uprobe-{}", std::process::id()));
        fs::write(&path, &code).unwrap();
        let file = fs::File::open(&path).unwrap();
        // SAFETY: maps a 4096-byte file read-only and private at an address the kernel picks;
        // nothing reads through the mapping, which only makes the file's code present here.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let pid = std::process::id();
        for (i, bytes) in cases.iter().enumerate() {
            let point = ProbePoint {
                path: &path,
                offset: (i * 16) as u64,
                pid,
                ret: false,
                cookie: 0,
            };
            let opened = open_event(pmu, point);
            let refused = opened.as_ref().err().and_then(io::Error::raw_os_error) == Some(524);
            let said = crate::placement::kernel_refuses(bytes);
            assert_eq!(refused, said, "{bytes:02x?}: the kernel said {opened:?}");
        }
        // SAFETY: unmaps the mapping made above, which nothing uses.
        unsafe { libc::munmap(map, 4096) };
        let _ = fs::remove_file(&path);
    }
}
