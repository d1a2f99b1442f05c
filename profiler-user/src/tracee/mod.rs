//! The tracee, the target process: checks on a pid, what it runs, its memory map, and its CPU
//! and memory use. Everything the profiler reads from /proc is read here.

pub(crate) mod freeze;
pub(crate) mod hold;
pub(crate) mod libs;
pub(crate) mod spawn;
pub(crate) mod task;

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use crate::error::ProfilerError;
use libs::needed_libraries;
use spawn::{Gated, resolve_command, spawn_gated};

/// How the target is found.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    Attach(i32),
    /// Start this command (program and arguments).
    Run(Vec<String>),
}

/// An object file the target has (or will have) mapped.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    /// The path as the target sees it (for the report).
    pub path: PathBuf,
    /// A path the profiler can open (through /proc/PID/root for another mount namespace).
    pub open_path: PathBuf,
}

impl Module {
    pub(crate) fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The target, found or started.
pub(crate) struct Found {
    pub info: TargetInfo,
    /// The executable first, then its libraries (mapped, or to be loaded in `run` mode).
    pub modules: Vec<Module>,
    /// `run` mode: the child, waiting at the gate until the probes are attached.
    pub gated: Option<Gated>,
}

/// Finds (attach) or starts at the gate (run) the target.
pub(crate) fn find(mode: &Mode) -> anyhow::Result<Found> {
    let (info, modules, gated) = match mode {
        Mode::Attach(pid) => {
            let info = inspect(*pid)?;
            let mappings = mappings(*pid).map_err(|_| ProfilerError::TargetExited(*pid))?;
            let paths = std::iter::once(info.exe.clone()).chain(
                mappings
                    .into_iter()
                    .filter(|m| m.executable)
                    .map(|m| m.path),
            );
            let mut modules: Vec<Module> = Vec::new();
            for path in paths {
                if !modules.iter().any(|m| m.path == path) {
                    let open_path = host_path(*pid, &path);
                    modules.push(Module { path, open_path });
                }
            }
            (info, modules, None)
        }
        Mode::Run(command) => {
            let program = resolve_command(&command[0])?;
            let modules = std::iter::once(program.clone())
                .chain(needed_libraries(&program))
                .map(|p| Module {
                    path: p.clone(),
                    open_path: p,
                })
                .collect();
            let gated = spawn_gated(&program, command)?;
            let info = TargetInfo {
                pid: gated.pid,
                exe: program,
                cmdline: command.clone(),
            };
            (info, modules, Some(gated))
        }
    };
    Ok(Found {
        info,
        modules,
        gated,
    })
}

/// What the report says about the target.
#[derive(Debug, Clone)]
pub(crate) struct TargetInfo {
    pub pid: i32,
    pub exe: PathBuf,
    pub cmdline: Vec<String>,
}

/// `PF_KTHREAD` in the flags field of /proc/PID/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Checks that `pid` is a live user-space process and describes it.
pub(crate) fn inspect(pid: i32) -> Result<TargetInfo, ProfilerError> {
    if pid <= 0 {
        return Err(ProfilerError::NoSuchProcess(pid));
    }
    // Its probes would fire in the profiler itself, on every event it handles.
    if u32::try_from(pid) == Ok(std::process::id()) {
        return Err(ProfilerError::Itself(pid));
    }
    let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(_) => return Err(ProfilerError::NoSuchProcess(pid)),
    };
    let fields = stat_fields(&stat);
    // Fields after the command: state is field 3, flags field 9 (1-based).
    let state = fields.first().copied().unwrap_or("?");
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    if flags & PF_KTHREAD != 0 {
        return Err(ProfilerError::KernelThread(pid));
    }
    if state == "Z" || state == "X" {
        return Err(ProfilerError::TargetExited(pid));
    }
    // A thread id is not a process: its tgid differs.
    if let Some(tgid) = status_field(pid, "Tgid")
        && tgid != pid.to_string()
    {
        return Err(ProfilerError::Spec(format!(
            "{pid} is a thread of process {tgid}: attach to the process id"
        )));
    }
    let exe = match fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(if Path::new(&format!("/proc/{pid}")).exists() {
                ProfilerError::KernelThread(pid)
            } else {
                ProfilerError::TargetExited(pid)
            });
        }
        // SAFETY: geteuid has no preconditions.
        Err(_) if unsafe { libc::geteuid() } != 0 => return Err(ProfilerError::NotPrivileged),
        // Root and still refused: the process is outside our reach (another user namespace or
        // a security module); say what the kernel said.
        Err(reason) => return Err(ProfilerError::Inspect { pid, reason }),
    };
    Ok(TargetInfo {
        pid,
        exe,
        cmdline: cmdline(pid),
    })
}

/// The fields of /proc/PID/stat after the `(comm)` field.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

fn status_field(pid: i32, name: &str) -> Option<String> {
    status_fields(&format!("/proc/{pid}/status"), &[name])
        .pop()
        .flatten()
}

/// The values of `names` in a /proc `status` file, in order.
fn status_fields(path: &str, names: &[&str]) -> Vec<Option<String>> {
    let status = fs::read_to_string(path).unwrap_or_default();
    names
        .iter()
        .map(|name| {
            status.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key == *name).then(|| value.trim().to_string())
            })
        })
        .collect()
}

/// The parent of process `pid` (field 4 of /proc/PID/stat), if it can be read.
pub(crate) fn parent_pid(pid: i32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The second field after the command.
    stat_fields(&stat).get(1)?.parse().ok()
}

/// The processes descending from `pid` now, each with its parent, parents before children
/// (every process in /proc whose chain of parents reaches `pid`).
pub(crate) fn descendants(pid: i32) -> Vec<(u32, u32)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_pid(p as i32)?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid as u32];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && child != pid as u32 {
                found.push((child, parent));
                frontier.push(child);
            }
        }
    }
    found
}

/// The profiler's own effective capabilities (`CapEff`), as a bit set.
pub(crate) fn own_capabilities() -> u64 {
    status_fields("/proc/self/status", &["CapEff"])
        .pop()
        .flatten()
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

/// The target's memory from /proc/PID/status, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    pub rss: u64,
    pub vms: u64,
    /// Peak resident set over the process's life (VmHWM).
    pub hwm: u64,
}

/// The target's resident set, virtual size and peak resident set.
pub(crate) fn memory(pid: i32) -> Option<Memory> {
    let values = status_fields(
        &format!("/proc/{pid}/status"),
        &["VmRSS", "VmSize", "VmHWM"],
    );
    let kb = |v: &Option<String>| -> Option<u64> {
        v.as_deref()?
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|v| v * 1024)
    };
    Some(Memory {
        rss: kb(&values[0])?,
        vms: kb(&values[1])?,
        hwm: kb(&values[2]).unwrap_or(0),
    })
}

/// Whether thread `tid` of process `pid` still exists.
pub(crate) fn thread_alive(pid: i32, tid: u32) -> bool {
    Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// Where the kernel's special mapping `name` (e.g. `[uprobes]`) starts in the target.
pub(crate) fn special_mapping(pid: i32, name: &str) -> Option<u64> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .find(|l| l.trim_end().ends_with(name))
        .and_then(|l| l.split('-').next())
        .and_then(|a| u64::from_str_radix(a, 16).ok())
}

pub(crate) fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the process still exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_fields(&stat).first(), Some(&"Z") | Some(&"X")),
        Err(_) => false,
    }
}

/// CPU time (user + system) thread `tid` of process `pid` has used, in seconds.
pub(crate) fn thread_cpu_time(pid: i32, tid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    Some(cpu_and_rss_of(&stat)?.0)
}

/// CPU time (user + system) the process has used, in seconds, and its resident set in bytes.
pub(crate) fn cpu_and_rss(pid: i32) -> Option<(f64, u64)> {
    cpu_and_rss_of(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time and resident set of a /proc `stat` text (a process's or a thread's).
fn cpu_and_rss_of(stat: &str) -> Option<(f64, u64)> {
    let fields = stat_fields(stat);
    // utime and stime are fields 14 and 15, rss (pages) field 24 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(((utime + stime) as f64 / ticks, rss_pages * page))
}

/// One /proc sample of the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since profiling started.
    pub at: f64,
    /// CPU time used so far, seconds.
    pub cpu_time: f64,
    pub rss: u64,
}

/// Samples the target's CPU time and resident set.
pub(crate) fn sample(pid: i32, start: std::time::Instant) -> Option<Sample> {
    let (cpu_time, rss) = cpu_and_rss(pid)?;
    Some(Sample {
        at: start.elapsed().as_secs_f64(),
        cpu_time,
        rss,
    })
}

/// One file-backed mapping of the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub executable: bool,
    /// The path as the target sees it.
    pub path: PathBuf,
}

/// The target's file-backed mappings (anonymous, [heap], [stack], [vdso] and the like are left
/// out).
pub(crate) fn mappings(pid: i32) -> std::io::Result<Vec<Mapping>> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_maps(&maps))
}

pub(crate) fn parse_maps(maps: &str) -> Vec<Mapping> {
    parse_regions(maps)
        .into_iter()
        .filter(|r| r.path.starts_with('/'))
        .map(|r| Mapping {
            start: r.start,
            end: r.end,
            file_offset: r.file_offset,
            executable: r.executable,
            path: PathBuf::from(r.path.trim_end_matches(" (deleted)")),
        })
        .collect()
}

/// One line of /proc/PID/maps, of any kind: the unwinder needs the inode (to tell two files of
/// one path apart) and the `[vdso]`, which [`Mapping`] leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub executable: bool,
    /// Device (`major:minor`, as written) and inode of the file; inode 0 for anonymous memory.
    pub dev: String,
    pub inode: u64,
    /// The path as written (`[vdso]`, `[stack]`, a file with ` (deleted)`), empty if none.
    pub path: String,
}

/// Every mapping of a /proc/PID/maps text.
pub(crate) fn parse_regions(maps: &str) -> Vec<Region> {
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(6, ' ');
            let range = parts.next()?;
            let perms = parts.next()?;
            let offset = parts.next()?;
            let dev = parts.next()?;
            let inode = parts.next()?;
            let path = parts.next().unwrap_or("").trim_start();
            let (start, end) = range.split_once('-')?;
            Some(Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                file_offset: u64::from_str_radix(offset, 16).ok()?,
                executable: perms.as_bytes().get(2) == Some(&b'x'),
                dev: dev.to_string(),
                inode: inode.parse().ok()?,
                path: path.to_string(),
            })
        })
        .collect()
}

/// A path the profiler can open for a file the target has mapped: through the target's root, so
/// that a process in another mount namespace (a container) is handled.
pub(crate) fn host_path(pid: i32, path: &Path) -> PathBuf {
    let through_root =
        Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path));
    if through_root.exists() {
        through_root
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /usr/bin/victim
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 123 /usr/bin/victim
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f1000000000-7f1000100000 r-xp 00028000 fe:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7f2000000000-7f2000001000 r-xp 00000000 fe:01 78 /tmp/lib with space.so (deleted)
";
        let m = parse_maps(maps);
        assert_eq!(m.len(), 4);
        assert!(!m[0].executable);
        assert!(m[1].executable);
        assert_eq!(m[1].file_offset, 0x1000);
        assert_eq!(
            m[2].path,
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(m[3].path, PathBuf::from("/tmp/lib with space.so"));
    }

    #[test]
    fn stat_fields_skip_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 1 0";
        assert_eq!(stat_fields(stat)[0], "S");
        assert_eq!(stat_fields(stat)[6], "4194560");
    }
}
