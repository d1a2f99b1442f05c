//! Uprobes by the thousand: the kernel's multi-uprobe link (Linux 6.6), one link for many offsets
//! of one file.
//!
//! aya 0.14 attaches each uprobe through a perf event of its own, and the kernel takes each such
//! event down under one global mutex with an RCU-tasks-trace grace period of its own (about 0.1 s
//! here): 2,000 probes took over three minutes to detach, one after another, however many threads
//! closed them. A multi-uprobe link registers all its offsets in one call and unregisters them
//! with a single grace period.
//!
//! The kernel wants such a program loaded for that link (its expected attach type), which aya 0.14
//! cannot do, so this module loads the program a second time itself, from the same object, with
//! its map references resolved to the maps aya created: both loads share every map, so what the
//! family reads is the same whichever one ran.

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

use anyhow::Context as _;
use aya::{Ebpf, maps::Map};
use aya_obj::generated::{
    BPF_F_UPROBE_MULTI_RETURN, bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type,
};

use super::EBPF_OBJECT;
use crate::error::ProfilerError;

/// A program loaded for multi-uprobe links. Closing it (drop) unloads it once its links are gone.
#[derive(Debug)]
pub(crate) struct MultiProgram {
    fd: OwnedFd,
}

/// One multi-uprobe link: its offsets stay probed until it is dropped, which takes them all down
/// together.
#[derive(Debug)]
pub(crate) struct MultiLink {
    _fd: OwnedFd,
    offsets: usize,
}

impl MultiLink {
    /// The offsets (probes) it holds.
    pub(crate) fn len(&self) -> usize {
        self.offsets
    }
}

/// Loads programs `names` of the eBPF object for multi-uprobe links, sharing `ebpf`'s maps (the
/// object is parsed and relocated once for all of them).
pub(crate) fn load<const N: usize>(
    ebpf: &Ebpf,
    names: [&str; N],
) -> anyhow::Result<[MultiProgram; N]> {
    let mut object = aya_obj::Object::parse(EBPF_OBJECT).context("cannot parse the eBPF object")?;
    let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
    let definitions = object.maps.clone();
    let fds: HashMap<&str, RawFd> = ebpf
        .maps()
        .map(|(name, map)| (name, map_data(map).fd().as_fd().as_raw_fd()))
        .collect();
    object
        .relocate_maps(
            definitions
                .iter()
                .filter_map(|(name, def)| Some((name.as_str(), *fds.get(name.as_str())?, def))),
            &text_sections,
        )
        .context("cannot resolve the programs' maps")?;
    object
        .relocate_calls(&text_sections)
        .context("cannot resolve the programs' calls")?;
    let mut programs = Vec::with_capacity(N);
    for name in names {
        let program = object
            .programs
            .get(name)
            .with_context(|| format!("program {name} missing from the eBPF object"))?;
        let function = object
            .functions
            .get(&program.function_key())
            .with_context(|| format!("program {name} has no code in the eBPF object"))?;
        let fd = load_program(name, &program.license, &function.instructions).map_err(|e| {
            if !kernel_has_multi_uprobes() {
                return ProfilerError::KernelFeature {
                    what: "multi-uprobe links (Linux 6.6)",
                    hint: "the functions and memory families need them; the others run without",
                }
                .into();
            }
            anyhow::Error::new(e).context(format!("failed to load {name} for multi-uprobe links"))
        })?;
        programs.push(MultiProgram { fd });
    }
    Ok(programs
        .try_into()
        .unwrap_or_else(|_| unreachable!("one program per name")))
}

impl MultiProgram {
    /// Probes `offsets` of file `path` (entries, or returns when `returns`) in process `pid` only;
    /// the program sees `cookies[i]` at `offsets[i]`.
    pub(crate) fn attach(
        &self,
        path: &Path,
        offsets: &[u64],
        cookies: &[u64],
        returns: bool,
        pid: u32,
    ) -> io::Result<MultiLink> {
        assert_eq!(offsets.len(), cookies.len(), "one cookie per offset");
        let path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        // SAFETY: bpf_attr is a plain C union; all-zero is its documented "unset" state.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writes to the LINK_CREATE member of the union, the one this command reads.
        unsafe {
            let create = &mut attr.link_create;
            create.__bindgen_anon_1.prog_fd = self.fd.as_raw_fd() as u32;
            create.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
            let multi = &mut create.__bindgen_anon_3.uprobe_multi;
            multi.path = path.as_ptr() as u64;
            multi.offsets = offsets.as_ptr() as u64;
            multi.cookies = cookies.as_ptr() as u64;
            multi.cnt = offsets.len() as u32;
            multi.flags = if returns {
                BPF_F_UPROBE_MULTI_RETURN
            } else {
                0
            };
            multi.pid = pid;
        }
        let fd = bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
        Ok(MultiLink {
            _fd: fd,
            offsets: offsets.len(),
        })
    }
}

/// Whether the running kernel is 6.6 or newer (multi-uprobe links).
fn kernel_has_multi_uprobes() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

/// `BPF_PROG_LOAD` of a kprobe-type program for multi-uprobe links; the verifier's log becomes the
/// error when it refuses the program.
fn load_program(name: &str, license: &CString, instructions: &[bpf_insn]) -> io::Result<OwnedFd> {
    let attempt = |log: Option<&mut [u8]>| {
        // SAFETY: bpf_attr is a plain C union; all-zero is its documented "unset" state.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writes to the PROG_LOAD member of the union, the one this command reads; the
        // pointers stay valid for the syscall.
        unsafe {
            let load = &mut attr.__bindgen_anon_3;
            load.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
            load.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
            load.insns = instructions.as_ptr() as u64;
            load.insn_cnt = instructions.len() as u32;
            load.license = license.as_ptr() as u64;
            for (slot, byte) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
                *slot = byte as _;
            }
            if let Some(log) = log {
                load.log_level = 1;
                load.log_buf = log.as_mut_ptr() as u64;
                load.log_size = log.len() as u32;
            }
        }
        bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    attempt(None).or_else(|_| {
        let mut log = vec![0u8; 1 << 20];
        attempt(Some(&mut log)).map_err(|e| {
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let last = text.lines().rev().take(3).collect::<Vec<_>>();
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; verifier: {}",
                    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            )
        })
    })
}

/// The `bpf(2)` system call for a command that returns a new file descriptor.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, initialised bpf_attr of the size passed; the kernel reads (and
    // for some commands writes) only within it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// The map behind any kind of aya map.
fn map_data(map: &Map) -> &aya::maps::MapData {
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use profiler_common::functions::programs::FN_ENTRY;

    use super::*;
    use crate::bpf::LoadOptions;

    /// The running kernel refuses exactly the instructions placement says it refuses: each is
    /// written to a file mapped executable here, and a multi-uprobe link on it is made for this
    /// process (the kernel analyzes the instruction then). Needs root: skipped otherwise, unless
    /// the suite runs strict (`PROFILER_TESTS_STRICT`, as CI does), where that fails.
    #[test]
    fn the_running_kernel_refuses_what_placement_says() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("PROFILER_TESTS_STRICT").is_none(),
                "needs root"
            );
            eprintln!("skipped: needs root");
            return;
        }
        // The table's own unit tests hold the rest, each probed once by hand on Linux 6.18.
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
        let ebpf = crate::bpf::load(pid, &LoadOptions::default()).unwrap();
        let [program] = load(&ebpf, [FN_ENTRY]).unwrap();
        for (i, bytes) in cases.iter().enumerate() {
            let linked = program.attach(&path, &[(i * 16) as u64], &[0], false, pid);
            let refused = linked.as_ref().err().and_then(io::Error::raw_os_error) == Some(524);
            let said = crate::placement::kernel_refuses(bytes);
            assert_eq!(refused, said, "{bytes:02x?}: the kernel said {linked:?}");
        }
        // SAFETY: unmaps the mapping made above, which nothing uses.
        unsafe { libc::munmap(map, 4096) };
        let _ = fs::remove_file(&path);
    }
}
