//! Addresses of the target back to functions, from a snapshot of its mappings, so that it works
//! after the target has exited: address -> (file, file offset) -> symbol.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
};

pub(crate) use crate::report::Frame;
use crate::tracee::Mapping;
use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};

/// The mappings seen so far, kept after they go so that symbolization works after the target
/// has exited.
#[derive(Debug, Default)]
pub(crate) struct MappingSnapshot {
    mappings: Vec<Mapping>,
    /// The same, to look one up without a scan (a target with hundreds of objects has
    /// thousands of mappings, and the snapshot is refreshed every tick).
    seen: HashSet<Mapping>,
    /// The maps text last read.
    last_text: String,
    /// Each mapped file, opened while the target was alive (through /proc/PID/root, so a target
    /// in another mount namespace is handled), and the path that reaches it through our own fd.
    files: HashMap<PathBuf, (File, PathBuf)>,
}

impl MappingSnapshot {
    /// Adds the target's current mappings.
    pub(crate) fn refresh(&mut self, pid: i32) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return;
        };
        // Most ticks find the maps as they were: nothing to parse.
        if text == self.last_text {
            return;
        }
        {
            let maps = crate::tracee::parse_maps(&text);
            for m in maps {
                if self.seen.insert(m.clone()) {
                    if !self.files.contains_key(&m.path)
                        && let Ok(file) = File::open(crate::tracee::host_path(pid, &m.path))
                    {
                        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                        self.files.insert(m.path.clone(), (file, fd_path));
                    }
                    self.mappings.push(m);
                }
            }
        }
        self.last_text = text;
    }

    /// Each mapped file (the path our fd reaches it by) and where its mapping of file offset 0
    /// starts.
    pub(crate) fn module_bases(&self) -> Vec<(PathBuf, u64)> {
        self.mappings
            .iter()
            .filter(|m| m.file_offset == 0)
            .map(|m| {
                let open = self.files.get(&m.path).map_or(&m.path, |(_, fd)| fd);
                (open.clone(), m.start)
            })
            .collect()
    }

    fn locate(&self, addr: u64) -> Option<(&Mapping, u64)> {
        // The newest mapping wins where an address was reused.
        self.mappings
            .iter()
            .rev()
            .find(|m| m.executable && (m.start..m.end).contains(&addr))
            .map(|m| (m, addr - m.start + m.file_offset))
    }
}

/// Symbolizes addresses of one target.
pub(crate) struct AddrSymbolizer {
    symbolizer: Symbolizer,
    /// Each address's frames (see [`AddrSymbolizer::frames_inlined`]).
    cache: HashMap<u64, Vec<Frame>>,
}

/// The `offset` of an inlined frame, which has no address of its own.
pub(crate) const INLINED: &str = "inlined";

impl Default for AddrSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl AddrSymbolizer {
    pub(crate) fn new() -> Self {
        Self {
            symbolizer: Symbolizer::builder().enable_demangling(true).build(),
            cache: HashMap::new(),
        }
    }

    /// The frame of `addr`: the function that holds its code.
    pub(crate) fn frame(&mut self, maps: &MappingSnapshot, addr: u64) -> Frame {
        self.frames_inlined(maps, addr)
            .pop()
            .expect("a lookup gives at least the function's frame")
    }

    /// The frames of `addr`, innermost first: the functions inlined at it (their `offset` is
    /// [`INLINED`]: they have no address of their own), then the function that holds its code.
    pub(crate) fn frames_inlined(&mut self, maps: &MappingSnapshot, addr: u64) -> Vec<Frame> {
        if let Some(frames) = self.cache.get(&addr) {
            return frames.clone();
        }
        let frames = self.lookup(maps, addr);
        self.cache.insert(addr, frames.clone());
        frames
    }

    /// See [`Self::frames_inlined`]: one symbolization of the address.
    fn lookup(&self, maps: &MappingSnapshot, addr: u64) -> Vec<Frame> {
        let Some((mapping, offset)) = maps.locate(addr) else {
            return vec![Frame {
                function: "??".into(),
                module: "??".into(),
                offset: format!("{addr:#x}"),
                file: None,
                line: None,
            }];
        };
        let module = mapping
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let open = maps
            .files
            .get(&mapping.path)
            .map_or(&mapping.path, |(_, fd_path)| fd_path);
        let src = Source::Elf(Elf::new(open));
        let mut frame = Frame {
            function: "??".into(),
            module,
            offset: format!("{offset:#x}"),
            file: None,
            line: None,
        };
        let mut frames = Vec::new();
        if let Ok(Symbolized::Sym(sym)) = self
            .symbolizer
            .symbolize_single(&src, Input::FileOffset(offset))
        {
            frame.function = crate::symbols::demangle(&sym.name);
            // blazesym lists the inlined functions outermost first, each with the location
            // inside it; the function's own location is then the call of the outermost.
            for f in sym.inlined.iter().rev() {
                frames.push(Frame {
                    function: crate::symbols::demangle(&f.name),
                    module: frame.module.clone(),
                    offset: INLINED.into(),
                    file: f
                        .code_info
                        .as_ref()
                        .map(|c| c.to_path().display().to_string()),
                    line: f.code_info.as_ref().and_then(|c| c.line),
                });
            }
            if let Some(info) = sym.code_info.as_deref() {
                frame.file = Some(info.to_path().display().to_string());
                frame.line = info.line;
            }
        }
        frames.push(frame);
        frames
    }
}
