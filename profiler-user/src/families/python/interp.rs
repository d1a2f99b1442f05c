//! Finding CPython in the target: the mapped object that defines `_PyRuntime` (the executable,
//! or `libpython3.X.so`), its version (`Py_Version`, else the file's name), its layout, the
//! addresses of the types the walk compares with, and where the exception probes go.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};

use super::{
    code::Memory,
    layout::{self, Layout},
};
use crate::{
    placement::{self, Role},
    tracee::{self, Region},
};

/// A function of the interpreter the family probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probed {
    pub name: &'static str,
    /// Where the probe goes in the file.
    pub file_offset: u64,
    /// The instruction there, and its cost class (see `placement`).
    pub instruction: String,
    pub emulated: bool,
}

/// An interpreter object (the executable, or `libpython3.X.so`), read from its file: enough to
/// probe it and walk its frames before the target maps it.
#[derive(Debug, Clone)]
pub(crate) struct InterpreterFile {
    /// As the target sees it, and a path the profiler opens.
    pub path: PathBuf,
    pub open_path: PathBuf,
    /// `3.11.7` (or `3.11` where only the file's name says).
    pub version: String,
    pub layout: Layout,
    /// `_PyErr_SetObject`, and `PyErr_Display` and `_PyErr_Display`, where the object has them.
    pub raise: Option<Probed>,
    pub display: Option<Probed>,
    pub display_internal: Option<Probed>,
    /// pymalloc's allocating functions, and `PyObject_Free`.
    pub allocators: Vec<AllocProbe>,
    pub free: Option<Probed>,
    /// Addresses in the file: `_PyRuntime`, and `PyCode_Type`; its first segment's address and
    /// whether it loads at a fixed address.
    runtime: u64,
    code_type: u64,
    first_vaddr: u64,
    fixed: bool,
}

/// The interpreter of the running target: its file, and where the target mapped it.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    pub file: InterpreterFile,
    /// Addresses in the target.
    pub runtime: u64,
    pub code_type: u64,
}

/// What looking for an interpreter found.
#[derive(Debug)]
pub(crate) enum Found {
    /// Not a CPython process (or not one yet: a `run` target before its exec).
    None,
    Interpreter(Box<Interpreter>),
    /// CPython, but of a version or build the family does not walk: why.
    Unsupported(String),
}

/// What reading a file found.
#[derive(Debug)]
pub(crate) enum FileFound {
    /// Not an interpreter object (no `_PyRuntime`).
    None,
    Interpreter(Box<InterpreterFile>),
    Unsupported(String),
}

/// The symbols of an object the family needs, by name: (address, size).
type Symbols = HashMap<&'static str, (u64, u64)>;

const WANTED: [&str; 11] = [
    "_PyRuntime",
    "Py_Version",
    "PyCode_Type",
    "_PyErr_SetObject",
    // GCC's partial inlining splits it in some builds (3.13 here): the callers inline its
    // first checks and call the rest, which takes the same arguments, and the function itself
    // jumps there. The probe goes on the rest, which every raise reaches.
    "_PyErr_SetObject.part.0",
    "_PyErr_Display",
    "PyErr_Display",
    "PyObject_Malloc",
    "PyObject_Calloc",
    "PyObject_Realloc",
    "PyObject_Free",
];

/// The allocating functions of pymalloc the family probes, with their attach cookies.
pub(crate) const ALLOCATORS: [(&str, u64); 3] = [
    ("PyObject_Malloc", profiler_common::python::alloc::MALLOC),
    ("PyObject_Calloc", profiler_common::python::alloc::CALLOC),
    ("PyObject_Realloc", profiler_common::python::alloc::REALLOC),
];

/// An allocating function: its entry probe (placed), and where its return probe goes (the
/// function's first byte: a return probe takes the return address found there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocProbe {
    pub entry: Probed,
    pub start: u64,
    pub cookie: u64,
}

/// Whether the file's name is one an interpreter object has.
fn candidate(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("python") || n.starts_with("libpython"))
}

/// Looks for the interpreter among the objects process `pid` maps now.
pub(crate) fn find(pid: i32) -> Found {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Found::None;
    };
    let regions = tracee::parse_regions(&text);
    let mut seen: Vec<&str> = Vec::new();
    for r in &regions {
        let path = Path::new(&r.path);
        if !r.path.starts_with('/') || !candidate(path) || seen.contains(&r.path.as_str()) {
            continue;
        }
        seen.push(&r.path);
        let open = tracee::host_path(pid, path);
        let file = match inspect_file(path, &open) {
            FileFound::None => continue,
            FileFound::Unsupported(why) => return Found::Unsupported(why),
            FileFound::Interpreter(f) => f,
        };
        let Some(bias) = bias(&regions, &r.path, file.first_vaddr, file.fixed) else {
            continue;
        };
        return Found::Interpreter(Box::new(Interpreter {
            runtime: file.runtime.wrapping_add(bias),
            code_type: file.code_type.wrapping_add(bias),
            file: *file,
        }));
    }
    Found::None
}

/// Reads the object at `open` (the target's `path`): an interpreter's, or not.
pub(crate) fn inspect_file(path: &Path, open: &Path) -> FileFound {
    if !candidate(path) {
        return FileFound::None;
    }
    let Ok(data) = std::fs::read(open) else {
        return FileFound::None;
    };
    let Ok(elf) = object::File::parse(&*data) else {
        return FileFound::None;
    };
    let mut symbols = Symbols::new();
    for s in elf.symbols().chain(elf.dynamic_symbols()) {
        if s.is_undefined() || s.address() == 0 {
            continue;
        }
        if let Ok(name) = s.name()
            && let Some(&wanted) = WANTED.iter().find(|w| **w == name)
        {
            symbols.entry(wanted).or_insert((s.address(), s.size()));
        }
    }
    let Some(&(runtime, _)) = symbols.get("_PyRuntime") else {
        return FileFound::None;
    };
    // Load segments: (address, size in the file, file offset).
    let segments: Vec<(u64, u64, u64)> = elf
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (s.address(), size, offset)
        })
        .collect();
    // The bytes at `addr` in the file (initialised data: what the target starts with).
    let bytes_at = |addr: u64, len: usize| -> Option<&[u8]> {
        let &(a, _, off) = segments
            .iter()
            .find(|(a, size, _)| addr >= *a && addr + len as u64 <= a + size)?;
        data.get((off + addr - a) as usize..(off + addr - a) as usize + len)
    };
    let hex = symbols
        .get("Py_Version")
        .and_then(|&(a, _)| bytes_at(a, 4))
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let (major, minor) = match (hex, minor_from_name(&path.to_string_lossy())) {
        (Some(h), _) => ((h >> 24) as u8, (h >> 16) as u8),
        (None, Some(m)) => (3, m),
        (None, None) => return FileFound::Unsupported("CPython of an unknown version".into()),
    };
    let version = match hex {
        Some(h) => format!("{major}.{minor}.{}", (h >> 8) & 0xff),
        None => format!("{major}.{minor}"),
    };
    let layout = if (major, minor) >= (3, 13) {
        bytes_at(runtime, layout::DEBUG_OFFSETS_BYTES).and_then(layout::from_debug_offsets)
    } else if major == 3 {
        layout::builtin(minor)
    } else {
        None
    };
    let Some(layout) = layout else {
        return FileFound::Unsupported(format!(
            "CPython {version}: Python frames are walked for {} only",
            layout::SUPPORTED
        ));
    };
    let Some(&(code_type, _)) = symbols.get("PyCode_Type") else {
        return FileFound::Unsupported(format!(
            "CPython {version}: {} has no symbol for its code type",
            path.display()
        ));
    };
    let start = |name: &str| {
        let &(addr, _) = symbols.get(name)?;
        let &(seg_addr, _, seg_offset) = segments
            .iter()
            .find(|(a, s, _)| (*a..*a + *s).contains(&addr))?;
        Some(addr - seg_addr + seg_offset)
    };
    let probe = |name: &'static str| {
        let &(addr, size) = symbols.get(name)?;
        let file_offset = start(name)?;
        let placed = placement::place_in_file(open, file_offset, addr, size, Role::Plain);
        if placed.refused.is_some() {
            return None;
        }
        Some(Probed {
            name,
            file_offset: file_offset + placed.offset,
            instruction: placed.instruction,
            emulated: placed.class == placement::CostClass::Emulated,
        })
    };
    FileFound::Interpreter(Box::new(InterpreterFile {
        path: path.to_path_buf(),
        open_path: open.to_path_buf(),
        version,
        layout,
        raise: probe("_PyErr_SetObject.part.0").or_else(|| probe("_PyErr_SetObject")),
        display: probe("PyErr_Display"),
        display_internal: probe("_PyErr_Display"),
        allocators: ALLOCATORS
            .iter()
            .filter_map(|&(name, cookie)| {
                Some(AllocProbe {
                    entry: probe(name)?,
                    start: start(name)?,
                    cookie,
                })
            })
            .collect(),
        free: probe("PyObject_Free"),
        runtime,
        code_type,
        first_vaddr: elf.segments().map(|s| s.address()).min().unwrap_or(0),
        fixed: elf.kind() == object::ObjectKind::Executable,
    }))
}

/// The load bias of the object at `path`: where its first mapping starts, less its first
/// segment's page (0 for a fixed-address executable).
fn bias(regions: &[Region], path: &str, first_vaddr: u64, fixed: bool) -> Option<u64> {
    if fixed {
        return Some(0);
    }
    let first = regions
        .iter()
        .filter(|r| r.path == path)
        .min_by_key(|r| (r.file_offset, r.start))?;
    Some(first.start.wrapping_sub(first_vaddr & !0xfff))
}

/// 11 of `libpython3.11.so.1.0` or `python3.11`.
fn minor_from_name(path: &str) -> Option<u8> {
    let name = Path::new(path).file_name()?.to_str()?;
    let rest = &name[name.find("python3.")? + "python3.".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The thread states of the interpreter's main interpreter: (the key the kernel finds it by,
/// its thread id or its `pthread_t`; `PyThreadState` address), from its list (at most `limit`
/// of them).
pub(crate) fn thread_states(
    mem: &dyn Memory,
    interp: &Interpreter,
    limit: usize,
) -> Vec<(u64, u64)> {
    let l = &interp.file.layout;
    let Some(head) = mem.u64_at(interp.runtime + l.runtime_interpreters_head) else {
        return Vec::new();
    };
    if head == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut t = mem.u64_at(head + l.interp_threads_head).unwrap_or(0);
    while t != 0 && out.len() < limit {
        let Some(key) = mem.u64_at(t + l.tstate_key) else {
            break;
        };
        if key != 0 {
            out.push((key, t));
        }
        t = mem.u64_at(t + l.tstate_next).unwrap_or(0);
    }
    out
}

/// The name of type object `addr` (`tp_name`).
pub(crate) fn type_name(mem: &dyn Memory, addr: u64) -> Option<String> {
    let name = mem.u64_at(addr + 24)?;
    let mut buf = vec![0u8; 128];
    // The name may end before a page does: read it shorter until it reads.
    for len in [128usize, 32, 8] {
        buf.truncate(len);
        if mem.read(name, &mut buf) {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_file_names() {
        assert_eq!(minor_from_name("/usr/lib/libpython3.11.so.1.0"), Some(11));
        assert_eq!(minor_from_name("/usr/bin/python3.12"), Some(12));
        assert_eq!(minor_from_name("/usr/bin/python"), None);
    }
}
