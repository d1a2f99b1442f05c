//! Code objects read out of the target (qualified name, file, first line, line table), their
//! line tables decoded, and a Python stack named frame by frame.

use std::{collections::HashMap, sync::Arc};

use profiler_common::python::{PyFrame, frame_flag};

use super::layout::Layout;
use crate::report::Frame;

/// Reads the target's memory.
pub(crate) trait Memory {
    /// Fills `buf` from `addr`; false where the target has no such memory (or is gone).
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }

    fn u32_at(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_le_bytes(b))
    }

    /// Reads each (address, buffer) at once where it can; returns how many, from the first,
    /// were read whole (the rest are read one by one).
    fn read_many(&self, _parts: &mut [(u64, Vec<u8>)]) -> usize {
        0
    }
}

/// The memory of process `pid`.
pub(crate) struct Process(pub i32);

impl Memory for Process {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        crate::tracee::task::read_memory(self.0, addr, buf).is_ok()
    }

    fn read_many(&self, parts: &mut [(u64, Vec<u8>)]) -> usize {
        crate::tracee::task::read_memory_many(self.0, parts)
    }
}

/// What the report needs of a code object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeInfo {
    pub qualname: String,
    pub filename: String,
    pub firstlineno: i32,
    /// `co_linetable` (the 3.11+ location table).
    pub linetable: Vec<u8>,
}

/// Longest str or bytes object read (a file name, a line table).
const MAX_OBJECT_BYTES: u64 = 1 << 20;

/// The characters of str object `addr` (compact strings only, as names and file names are).
pub(crate) fn read_str(mem: &dyn Memory, layout: &Layout, addr: u64) -> Option<String> {
    let length = mem.u64_at(addr + 16)?;
    let state = mem.u32_at(addr + 32)?;
    if length > MAX_OBJECT_BYTES || (state >> 5) & 1 == 0 {
        return None;
    }
    let ascii = (state >> 6) & 1 != 0;
    let kind = ((state >> 2) & 7) as u64;
    let (data, width) = if ascii {
        (addr + u64::from(layout.ascii_data), 1)
    } else {
        (addr + u64::from(layout.compact_data), kind)
    };
    if !matches!(width, 1 | 2 | 4) {
        return None;
    }
    let mut buf = vec![0u8; (length * width) as usize];
    if !mem.read(data, &mut buf) {
        return None;
    }
    Some(decode(&buf, width as usize))
}

/// Characters of `width` bytes each (Latin-1, UCS-2, UCS-4) as a String.
pub(crate) fn decode(bytes: &[u8], width: usize) -> String {
    bytes
        .chunks_exact(width)
        .map(|c| {
            let mut v = 0u32;
            for (i, b) in c.iter().enumerate() {
                v |= u32::from(*b) << (8 * i);
            }
            char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER)
        })
        .collect()
}

/// The contents of bytes object `addr`.
pub(crate) fn read_bytes(mem: &dyn Memory, addr: u64) -> Option<Vec<u8>> {
    let size = mem.u64_at(addr + 16)?;
    if size > MAX_OBJECT_BYTES {
        return None;
    }
    let mut buf = vec![0u8; size as usize];
    mem.read(addr + 32, &mut buf).then_some(buf)
}

/// Bytes of a code object read at once: its type and every field the family reads.
fn header_len(layout: &Layout) -> usize {
    [
        layout.code_qualname,
        layout.code_filename,
        layout.code_linetable,
        layout.code_firstlineno,
    ]
    .into_iter()
    .max()
    .unwrap_or(0) as usize
        + 8
}

/// A word of a code object's header.
fn word(header: &[u8], offset: u64) -> u64 {
    let at = offset as usize;
    u64::from_le_bytes(header[at..at + 8].try_into().unwrap())
}

/// What tells two code objects at one address apart (one freed, another allocated there): the
/// addresses of its name, file and line table, and its first line.
fn identity(layout: &Layout, header: &[u8]) -> Identity {
    [
        word(header, layout.code_qualname),
        word(header, layout.code_filename),
        word(header, layout.code_linetable),
        word(header, layout.code_firstlineno) & 0xffff_ffff,
    ]
}

/// The code object whose header is `header`, where it is one (its type is `code_type`).
fn read_code_at(
    mem: &dyn Memory,
    layout: &Layout,
    code_type: u64,
    header: &[u8],
    strings: &mut HashMap<u64, Option<String>>,
) -> Option<CodeInfo> {
    if word(header, 8) != code_type {
        return None;
    }
    let mut string = |addr: u64| {
        strings
            .entry(addr)
            .or_insert_with(|| read_str(mem, layout, addr))
            .clone()
    };
    let qualname = string(word(header, layout.code_qualname))?;
    let filename = string(word(header, layout.code_filename))?;
    let firstlineno = word(header, layout.code_firstlineno) as u32 as i32;
    let linetable = read_bytes(mem, word(header, layout.code_linetable))?;
    Some(CodeInfo {
        qualname,
        filename,
        firstlineno,
        linetable,
    })
}

/// The line of code unit `lasti` from a 3.11+ location table (`Objects/locations.md` of
/// CPython): entries of `1 cccc lll` (code `cccc`, `lll + 1` code units), then the code's
/// varints. None where the instruction has no line.
pub(crate) fn line_of(table: &[u8], firstlineno: i32, lasti: i64) -> Option<u32> {
    if lasti < 0 {
        return None;
    }
    let mut line = i64::from(firstlineno);
    let mut unit = 0i64;
    let mut i = 0;
    while i < table.len() {
        let head = table[i];
        let code = (head >> 3) & 15;
        let length = i64::from(head & 7) + 1;
        let mut j = i + 1;
        let (delta, has_line) = match code {
            15 => (0, false),
            13 | 14 => (signed_varint(table, &mut j), true),
            10..=12 => (i64::from(code) - 10, true),
            _ => (0, true),
        };
        line += delta;
        if lasti < unit + length {
            return has_line.then(|| u32::try_from(line).ok()).flatten();
        }
        unit += length;
        // The next entry starts at the next byte with its top bit set.
        i = j;
        while i < table.len() && table[i] & 0x80 == 0 {
            i += 1;
        }
    }
    None
}

/// The line of code unit `lasti` from a 3.10 line table (`co_linetable`, `Objects/lnotab_notes.txt`
/// of CPython 3.10): pairs of (bytes of code, signed line delta), a delta of -128 for "no line".
pub(crate) fn line_of_310(table: &[u8], firstlineno: i32, lasti: i64) -> Option<u32> {
    if lasti < 0 {
        return None;
    }
    let target = 2 * lasti;
    let (mut line, mut start) = (i64::from(firstlineno), 0i64);
    for pair in table.chunks_exact(2) {
        let end = start + i64::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if (start..end).contains(&target) {
            return this.and_then(|l| u32::try_from(l).ok());
        }
        start = end;
    }
    None
}

/// A varint of the location table: 6 bits a byte, low first, bit 6 set while more follow.
fn varint(table: &[u8], i: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(&b) = table.get(*i) {
        *i += 1;
        value |= u64::from(b & 63) << shift;
        shift += 6;
        if b & 64 == 0 || shift > 60 {
            break;
        }
    }
    value
}

fn signed_varint(table: &[u8], i: &mut usize) -> i64 {
    let v = varint(table, i);
    if v & 1 != 0 {
        -((v >> 1) as i64)
    } else {
        (v >> 1) as i64
    }
}

/// A Python frame, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub frame: Frame,
    /// Its instruction's address (or 3.10's index): a location of its own in pprof.
    pub address: u64,
    /// See `profiler_common::python::frame_flag`.
    pub entry: bool,
    pub shim: bool,
}

/// The module of a Python frame whose code object could not be read.
pub(crate) const UNKNOWN_CODE: &str = "[python]";

/// The offset field of a Python frame (it has no offset in a file).
pub(crate) const PYTHON_OFFSET: &str = "python";

/// What tells two code objects at one address apart (one freed, another allocated there): the
/// addresses of its name, file and line table, and its first line.
pub(crate) type Identity = [u64; 4];

/// Code objects read, by address (None: not one, or unreadable), each with its identity.
#[derive(Debug, Default)]
pub(crate) struct Codes {
    known: HashMap<u64, (Identity, Option<Arc<CodeInfo>>)>,
}

/// A Python frame with the code object it ran, as read when its stack was new.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub frame: PyFrame,
    pub code: Option<Arc<CodeInfo>>,
}

impl Codes {
    /// The code objects of `frames`: as the kernel sent them (it sends a code object before the
    /// first stack it is in, and again when another one is at its address), else read now from
    /// the target (every header in one read), where the kernel's record was lost.
    pub(crate) fn resolve(
        &mut self,
        mem: &dyn Memory,
        layout: &Layout,
        code_type: u64,
        frames: &[PyFrame],
    ) -> Vec<Resolved> {
        let mut addrs: Vec<u64> = frames
            .iter()
            .map(PyFrame::code_object)
            .filter(|a| !self.known.contains_key(a))
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        let len = header_len(layout);
        let mut headers: Vec<(u64, Vec<u8>)> = addrs.iter().map(|&a| (a, vec![0; len])).collect();
        let whole = mem.read_many(&mut headers);
        let mut strings = HashMap::new();
        for (i, (addr, header)) in headers.iter_mut().enumerate() {
            if i >= whole && !mem.read(*addr, header) {
                continue;
            }
            let code = read_code_at(mem, layout, code_type, header, &mut strings).map(Arc::new);
            self.known.insert(*addr, (identity(layout, header), code));
        }
        frames
            .iter()
            .map(|f| Resolved {
                frame: *f,
                code: self
                    .known
                    .get(&f.code_object())
                    .and_then(|(_, c)| c.clone()),
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.known.values().filter(|c| c.1.is_some()).count()
    }

    /// A code object the kernel sent (its names copied there), known from now on by its
    /// identity.
    pub(crate) fn remember(&mut self, addr: u64, identity: Identity, info: CodeInfo) {
        self.known.insert(addr, (identity, Some(Arc::new(info))));
    }
}

/// The frames of a stack, innermost first, named.
pub(crate) fn name(layout: &Layout, frames: &[Resolved]) -> Vec<Named> {
    frames
        .iter()
        .map(|r| {
            let f = &r.frame;
            let code = f.code_object();
            let flags = f.flags();
            let legacy = layout.frame_kind == profiler_common::python::layout::FRAME_OBJECT;
            let lasti = if legacy {
                i64::from(f.instr as u32 as i32)
            } else {
                (f.instr as i64 - (code + layout.code_adaptive) as i64) / 2
            };
            let frame = match &r.code {
                Some(c) => Frame {
                    function: c.qualname.clone(),
                    module: c.filename.clone(),
                    offset: PYTHON_OFFSET.into(),
                    file: Some(c.filename.clone()),
                    line: if legacy {
                        line_of_310(&c.linetable, c.firstlineno, lasti)
                    } else {
                        line_of(&c.linetable, c.firstlineno, lasti)
                    },
                },
                None => Frame {
                    function: "??".into(),
                    module: UNKNOWN_CODE.into(),
                    offset: PYTHON_OFFSET.into(),
                    file: None,
                    line: None,
                },
            };
            Named {
                frame,
                address: f.instr,
                entry: flags & frame_flag::ENTRY != 0,
                shim: flags & frame_flag::SHIM != 0,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "code_tests.rs"]
mod tests;
