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

/// The interpreter of the target.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    /// The object that holds it, as the target sees it, and a path the profiler opens.
    pub path: PathBuf,
    pub open_path: PathBuf,
    /// `3.11.7`.
    pub version: String,
    pub layout: Layout,
    /// Addresses in the target.
    pub runtime: u64,
    pub unicode_type: u64,
    pub tuple_type: u64,
    pub code_type: u64,
    /// `_PyErr_SetObject` and `_PyErr_Display`, where the object has them.
    pub raise: Option<Probed>,
    pub display: Option<Probed>,
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

/// The symbols of an object the family needs, by name: (address, size).
type Symbols = HashMap<&'static str, (u64, u64)>;

const WANTED: [&str; 8] = [
    "_PyRuntime",
    "Py_Version",
    "PyUnicode_Type",
    "PyTuple_Type",
    "PyCode_Type",
    "_PyErr_SetObject",
    // GCC's partial inlining splits it in some builds (3.13 here): the callers inline its
    // first checks and call the rest, which takes the same arguments, and the function itself
    // jumps there. The probe goes on the rest, which every raise reaches.
    "_PyErr_SetObject.part.0",
    "_PyErr_Display",
];

/// Looks for the interpreter among the objects process `pid` maps now.
pub(crate) fn find(pid: i32) -> Found {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Found::None;
    };
    let regions = tracee::parse_regions(&text);
    let mut seen: Vec<&str> = Vec::new();
    for r in &regions {
        let name = Path::new(&r.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let candidate = name.starts_with("python") || name.starts_with("libpython");
        if !r.path.starts_with('/') || !candidate || seen.contains(&r.path.as_str()) {
            continue;
        }
        seen.push(&r.path);
        let open = tracee::host_path(pid, Path::new(&r.path));
        let Some((symbols, first_vaddr, fixed, segments)) = parse(&open) else {
            continue;
        };
        let Some(&(runtime, _)) = symbols.get("_PyRuntime") else {
            continue;
        };
        let Some(bias) = bias(&regions, &r.path, first_vaddr, fixed) else {
            continue;
        };
        return inspect(pid, r, &open, &symbols, bias, runtime, &segments);
    }
    Found::None
}

/// Load segments: (address, size, file offset).
type Segments = Vec<(u64, u64, u64)>;

fn parse(path: &Path) -> Option<(Symbols, u64, bool, Segments)> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let mut symbols = Symbols::new();
    for s in file.symbols().chain(file.dynamic_symbols()) {
        if s.is_undefined() || s.address() == 0 {
            continue;
        }
        if let Ok(name) = s.name()
            && let Some(&wanted) = WANTED.iter().find(|w| **w == name)
        {
            symbols.entry(wanted).or_insert((s.address(), s.size()));
        }
    }
    let segments = file
        .segments()
        .map(|s| (s.address(), s.size(), s.file_range().0))
        .collect();
    let first_vaddr = file.segments().map(|s| s.address()).min()?;
    let fixed = file.kind() == object::ObjectKind::Executable;
    Some((symbols, first_vaddr, fixed, segments))
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

fn inspect(
    pid: i32,
    region: &Region,
    open: &Path,
    symbols: &Symbols,
    bias: u64,
    runtime: u64,
    segments: &Segments,
) -> Found {
    let mem = super::code::Process(pid);
    let at = |name: &str| symbols.get(name).map(|&(a, _)| a.wrapping_add(bias));
    let hex = at("Py_Version").and_then(|a| mem.u32_at(a));
    let file_minor = minor_from_name(&region.path);
    let (major, minor) = match hex {
        Some(h) => ((h >> 24) as u8, (h >> 16) as u8),
        None => match file_minor {
            Some(m) => (3, m),
            None => return Found::Unsupported("CPython of an unknown version".into()),
        },
    };
    let version = match hex {
        Some(h) => format!("{major}.{minor}.{}", (h >> 8) & 0xff),
        None => format!("{major}.{minor}"),
    };
    let runtime = runtime.wrapping_add(bias);
    let layout = if (major, minor) >= (3, 13) {
        let mut bytes = vec![0u8; layout::DEBUG_OFFSETS_BYTES];
        if !mem.read(runtime, &mut bytes) {
            return Found::None;
        }
        layout::from_debug_offsets(&bytes)
    } else if major == 3 {
        layout::builtin(minor)
    } else {
        None
    };
    let Some(layout) = layout else {
        return Found::Unsupported(format!(
            "CPython {version}: Python frames are walked for {} only",
            layout::SUPPORTED
        ));
    };
    let (Some(unicode_type), Some(tuple_type), Some(code_type)) =
        (at("PyUnicode_Type"), at("PyTuple_Type"), at("PyCode_Type"))
    else {
        return Found::Unsupported(format!(
            "CPython {version}: {} has no symbols for its types",
            region.path
        ));
    };
    let probe = |name: &'static str| {
        let &(addr, size) = symbols.get(name)?;
        let &(seg_addr, _, seg_offset) = segments
            .iter()
            .find(|(a, s, _)| (*a..*a + *s).contains(&addr))?;
        let file_offset = addr - seg_addr + seg_offset;
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
    Found::Interpreter(Box::new(Interpreter {
        path: PathBuf::from(&region.path),
        open_path: open.to_path_buf(),
        version,
        layout,
        runtime,
        unicode_type,
        tuple_type,
        code_type,
        raise: probe("_PyErr_SetObject.part.0").or_else(|| probe("_PyErr_SetObject")),
        display: probe("_PyErr_Display"),
    }))
}

/// 11 of `libpython3.11.so.1.0` or `python3.11`.
fn minor_from_name(path: &str) -> Option<u8> {
    let name = Path::new(path).file_name()?.to_str()?;
    let rest = &name[name.find("python3.")? + "python3.".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The thread states of the interpreter's main interpreter: (thread id, `PyThreadState`
/// address), from its list (at most `limit` of them).
pub(crate) fn thread_states(
    mem: &dyn Memory,
    interp: &Interpreter,
    limit: usize,
) -> Vec<(u32, u64)> {
    let l = &interp.layout;
    let Some(head) = mem.u64_at(interp.runtime + l.runtime_interpreters_head) else {
        return Vec::new();
    };
    if head == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut t = mem.u64_at(head + l.interp_threads_head).unwrap_or(0);
    while t != 0 && out.len() < limit {
        let Some(tid) = mem.u64_at(t + l.tstate_native_thread_id) else {
            break;
        };
        if tid != 0 && tid <= u64::from(u32::MAX) {
            out.push((tid as u32, t));
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
