//! Compiles an object's call-frame information into the compact unwind table the `cpu` family's
//! kernel walk reads ([`UnwindRow`]s, see `profiler_common::cpu`): every FDE of `.eh_frame`, and
//! of `.debug_frame` where it covers code `.eh_frame` does not, is evaluated row by row (gimli),
//! and each row is reduced to one of the few rules the walk evaluates: the CFA as rsp or rbp plus
//! an offset, the linkers' PLT expression, a signal frame, the outermost frame; anything else is
//! kept as a row the walk does not evaluate, so that it falls back to the frame pointer there
//! instead of using the rule of the code before.
//!
//! The rows of one object are relative to its table base (the lowest address an FDE covers), so
//! that one table serves the object wherever it is loaded: [`mapping_base`] places the base in a
//! target from a mapping of the object.

use std::{collections::HashMap, ops::Range};
#[cfg(test)]
use std::{fs, io, sync::Arc};

#[cfg(test)]
use anyhow::Context;
use anyhow::bail;
use gimli::{
    BaseAddresses, CfaRule, CieOrFde, CommonInformationEntry, DebugFrame, EhFrame, EndianSlice,
    LittleEndian, Reader, Register, RegisterRule, UnwindContext, UnwindOffset, UnwindSection,
    UnwindTableRow, constants as dw,
};
use object::{
    Architecture, Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadRef, SegmentFlags,
    elf::PF_X,
};
#[cfg(test)]
use profiler_common::cpu::Mapping;
use profiler_common::cpu::{RBP_LOST, RBP_UNCHANGED, UnwindRow, cfa};

#[cfg(test)]
use crate::tracee::{Region, parse_regions, task::read_memory};

/// x86-64 DWARF register numbers: rbp, rsp, and the return address column (rip).
const RBP: Register = Register(6);
const RSP: Register = Register(7);
#[cfg(test)]
const RIP: Register = Register(16);

/// The name /proc/PID/maps gives the vDSO's mapping.
pub(crate) const VDSO: &str = "[vdso]";

/// glibc's (and musl's) signal trampoline, the return address of every signal handler.
const RESTORE_RT: &str = "__restore_rt";

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// What a table holds, for the report and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TableStats {
    /// FDEs that gave rows (of `.eh_frame` and `.debug_frame`).
    pub fdes: u32,
    /// Rows of the table, and of them the ones of each kind the walk treats specially.
    pub rows: u32,
    pub unsupported: u32,
    pub plt: u32,
    pub signal: u32,
    pub end: u32,
}

impl TableStats {
    /// The counts of `rows`, from `fdes` FDEs.
    pub(crate) fn of(rows: &[UnwindRow], fdes: u32) -> Self {
        let count = |kind| rows.iter().filter(|r| r.cfa == kind).count() as u32;
        Self {
            fdes,
            rows: rows.len() as u32,
            unsupported: count(cfa::UNSUPPORTED),
            plt: count(cfa::PLT),
            signal: count(cfa::SIGNAL),
            end: count(cfa::END),
        }
    }
}

/// One `PT_LOAD` segment: where its bytes lie in the file and where it expects to be loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    pub file_offset: u64,
    pub file_size: u64,
    pub vaddr: u64,
    pub executable: bool,
}

/// The unwind table of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectTable {
    /// Sorted by `pc`, no two in a row alike but for it; the last one is a [`cfa::NONE`] row
    /// at the end of the last function (empty: the object has no call-frame information).
    pub rows: Vec<UnwindRow>,
    /// The object's virtual address the rows' `pc`s are relative to: the lowest FDE start (the
    /// first row's).
    pub base: u64,
    /// The object's `PT_LOAD` segments, to place the base in a target ([`mapping_base`]).
    pub segments: Vec<LoadSegment>,
    pub stats: TableStats,
}

#[cfg(test)]
impl ObjectTable {
    /// The row that covers the object's virtual address `vaddr` (None before the first row).
    pub(crate) fn row_at(&self, vaddr: u64) -> Option<&UnwindRow> {
        row_for(&self.rows, vaddr.checked_sub(self.base)?)
    }

    /// Where this table's base lies in a target that maps the object at `map_start` from file
    /// offset `map_file_offset` ([`mapping_base`]).
    pub(crate) fn mapping_base(&self, map_start: u64, map_file_offset: u64) -> Option<u64> {
        mapping_base(&self.segments, map_start, map_file_offset, self.base)
    }
}

/// The last of `rows` (sorted by `pc`) with `pc <= offset`: the kernel walk's binary search.
pub(crate) fn row_for(rows: &[UnwindRow], offset: u64) -> Option<&UnwindRow> {
    let after = rows.partition_point(|r| u64::from(r.pc) <= offset);
    rows.get(after.checked_sub(1)?)
}

/// A row of a kind whose other fields mean nothing.
const fn bare(kind: u8) -> UnwindRow {
    UnwindRow {
        pc: 0,
        cfa_offset: 0,
        cfa: kind,
        rbp: 0,
    }
}

#[cfg(test)]
/// Compiles the unwind table of the ELF image `elf` (a file's bytes, or the vDSO's image read
/// from a target).
pub(crate) fn compile(elf: &[u8]) -> anyhow::Result<ObjectTable> {
    compile_file(&object::File::parse(elf).context("not an object file")?)
}

/// [`compile`] of a parsed object: with a `ReadCache` behind it, only the sections used are read.
pub(crate) fn compile_file<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
) -> anyhow::Result<ObjectTable> {
    if file.architecture() != Architecture::X86_64 || !file.is_little_endian() {
        bail!("not an x86-64 object ({:?})", file.architecture());
    }
    let segments: Vec<LoadSegment> = file
        .segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            let executable =
                matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0);
            LoadSegment {
                file_offset,
                file_size,
                vaddr: s.address(),
                executable,
            }
        })
        .collect();
    // Where code can be: an FDE elsewhere is one of code the linker discarded (in `.debug_frame`
    // its address is 0 or a tombstone). An object without segments (relocatable) is taken whole.
    let code: Vec<Range<u64>> = file
        .segments()
        .zip(&segments)
        .filter(|(_, s)| s.executable)
        .map(|(seg, s)| s.vaddr..s.vaddr.saturating_add(seg.size()))
        .collect();
    let in_code = |start: u64, end: u64| {
        code.is_empty() || code.iter().any(|c| c.start <= start && end <= c.end)
    };
    let section_address = |name: &str| file.section_by_name(name).map(|s| s.address());
    let mut bases = BaseAddresses::default();
    if let Some(addr) = section_address(".text") {
        bases = bases.set_text(addr);
    }
    if let Some(addr) = section_address(".got") {
        bases = bases.set_got(addr);
    }
    let mut found = Found::default();
    let mut ctx = Box::new(UnwindContext::new());
    if let Some(section) = file.section_by_name(".eh_frame")
        && let Ok(data) = section.uncompressed_data()
    {
        let mut eh_frame = EhFrame::new(&data, LittleEndian);
        eh_frame.set_address_size(8);
        let bases = bases.clone().set_eh_frame(section.address());
        collect(
            &eh_frame,
            &bases,
            &mut ctx,
            &in_code,
            Source::EhFrame,
            &mut found,
        );
    }
    // `.debug_frame` fills in what `.eh_frame` leaves out (a compressed one is passed over: this
    // build of `object` cannot inflate it).
    if let Some(section) = file.section_by_name(".debug_frame")
        && let Ok(data) = section.uncompressed_data()
    {
        let mut debug_frame = DebugFrame::new(&data, LittleEndian);
        debug_frame.set_address_size(8);
        let covered = Covered::new(&found.spans);
        let fill = |start: u64, end: u64| in_code(start, end) && !covered.overlaps(start, end);
        collect(
            &debug_frame,
            &bases,
            &mut ctx,
            &fill,
            Source::DebugFrame,
            &mut found,
        );
    }
    let fdes = found.spans.len() as u32;
    if let Some(span) = restore_rt(file, &found) {
        found.raw.push((span.start, bare(cfa::SIGNAL)));
        found.spans.push(Span {
            rows: found.raw.len() - 1..found.raw.len(),
            ..span
        });
    }
    let (rows, base) = assemble(found)?;
    Ok(ObjectTable {
        stats: TableStats::of(&rows, fdes),
        rows,
        base,
        segments,
    })
}

/// Where an FDE comes from; at one start address, a later source wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    EhFrame,
    DebugFrame,
    /// The signal trampoline found by its symbol.
    Symbol,
}

/// The code one FDE covers, `[start, end)`, and its rows in [`Found::raw`].
#[derive(Debug, Clone)]
struct Span {
    start: u64,
    end: u64,
    rows: Range<usize>,
    source: Source,
}

/// The FDEs read so far, and their rows at their virtual addresses.
#[derive(Default)]
struct Found {
    spans: Vec<Span>,
    raw: Vec<(u64, UnwindRow)>,
}

/// Reads every FDE of `section` that `accept` takes (by its range) into `found`. A malformed
/// entry ends the section (the entries after it cannot be found); an FDE whose instructions
/// cannot be evaluated gets one row the walk does not evaluate.
fn collect<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    bases: &BaseAddresses,
    ctx: &mut UnwindContext<usize>,
    accept: &dyn Fn(u64, u64) -> bool,
    source: Source,
    found: &mut Found,
) where
    S::Offset: UnwindOffset<usize>,
{
    let mut cies: HashMap<usize, CommonInformationEntry<Slice<'a>>> = HashMap::new();
    let mut get_cie = |section: &S, bases: &BaseAddresses, offset: S::Offset| {
        let key = UnwindOffset::into(offset);
        if let Some(cie) = cies.get(&key) {
            return Ok(cie.clone());
        }
        let cie = section.cie_from_offset(bases, offset)?;
        cies.insert(key, cie.clone());
        Ok(cie)
    };
    let mut entries = section.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) = partial.parse(&mut get_cie) else {
            continue;
        };
        let (start, end) = (fde.initial_address(), fde.end_address());
        if end <= start || !accept(start, end) {
            continue;
        }
        let first = found.raw.len();
        let signal = fde.is_signal_trampoline();
        let ra = fde.cie().return_address_register();
        let complete = fde.rows(section, bases, ctx).and_then(|mut table| {
            while let Some(row) = table.next_row()? {
                let at = row.start_address();
                if at >= row.end_address() || at < start || at >= end {
                    continue;
                }
                let unwind = if signal {
                    bare(cfa::SIGNAL)
                } else {
                    convert(row, ra, section)
                };
                match found.raw[first..].last_mut() {
                    Some(last) if last.0 == at => last.1 = unwind,
                    _ => found.raw.push((at, unwind)),
                }
            }
            Ok(())
        });
        if complete.is_err() {
            found.raw.truncate(first);
            found.raw.push((start, bare(cfa::UNSUPPORTED)));
        }
        found.spans.push(Span {
            start,
            end,
            rows: first..found.raw.len(),
            source,
        });
    }
}

/// The row of the walk for one row of an FDE (its `pc` left 0).
fn convert<'a, S: UnwindSection<Slice<'a>>>(
    row: &UnwindTableRow<usize>,
    ra: Register,
    section: &S,
) -> UnwindRow {
    match row.register(ra) {
        Some(RegisterRule::Undefined) => return bare(cfa::END),
        Some(RegisterRule::Offset(-8)) => {}
        _ => return bare(cfa::UNSUPPORTED),
    }
    let rbp = rbp_rule(row.register(RBP));
    let (kind, cfa_offset, rbp) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let kind = match *register {
                RSP => cfa::RSP,
                RBP => cfa::RBP,
                _ => return bare(cfa::UNSUPPORTED),
            };
            let Ok(offset) = u16::try_from(*offset) else {
                return bare(cfa::UNSUPPORTED);
            };
            (kind, offset, rbp)
        }
        CfaRule::Expression(expr) => {
            let plt = expr.get(section).ok().and_then(|e| plt_expression(e.0));
            match plt {
                Some((offset, threshold)) if rbp == RBP_UNCHANGED => (cfa::PLT, offset, threshold),
                _ => return bare(cfa::UNSUPPORTED),
            }
        }
    };
    UnwindRow {
        pc: 0,
        cfa_offset,
        cfa: kind,
        rbp,
    }
}

/// The row's `rbp` field for the rule of rbp: saved at CFA + 8n ([`UnwindRow::rbp`] n), kept
/// ([`RBP_UNCHANGED`]), or anything else ([`RBP_LOST`]).
fn rbp_rule(rule: Option<RegisterRule<usize>>) -> i8 {
    match rule {
        None | Some(RegisterRule::SameValue) => RBP_UNCHANGED,
        Some(RegisterRule::Register(r)) if r == RBP => RBP_UNCHANGED,
        Some(RegisterRule::Offset(n)) if n % 8 == 0 => match i8::try_from(n / 8) {
            Ok(units) if units != RBP_UNCHANGED && units != RBP_LOST => units,
            _ => RBP_LOST,
        },
        _ => RBP_LOST,
    }
}

/// The CFA offset N and threshold K of the linkers' PLT expression, `rsp + N + ((rip & 15) >= K
/// ? 8 : 0)`: `DW_OP_breg7 N; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_litK; DW_OP_ge;
/// DW_OP_lit3; DW_OP_shl; DW_OP_plus` (K also as `DW_OP_const1u`). None for any other.
fn plt_expression(mut expr: Slice<'_>) -> Option<(u16, i8)> {
    let expr = &mut expr;
    expect(expr, dw::DW_OP_breg7)?;
    let offset = u16::try_from(expr.read_sleb128().ok()?).ok()?;
    expect(expr, dw::DW_OP_breg16)?;
    (expr.read_sleb128().ok()? == 0).then_some(())?;
    expect(expr, dw::DW_OP_lit15)?;
    expect(expr, dw::DW_OP_and)?;
    let threshold = match expr.read_u8().ok()? {
        lit if (dw::DW_OP_lit0.0..=dw::DW_OP_lit31.0).contains(&lit) => lit - dw::DW_OP_lit0.0,
        op if op == dw::DW_OP_const1u.0 => expr.read_u8().ok()?,
        _ => return None,
    };
    for op in [dw::DW_OP_ge, dw::DW_OP_lit3, dw::DW_OP_shl, dw::DW_OP_plus] {
        expect(expr, op)?;
    }
    (expr.is_empty() && threshold <= 16).then_some((offset, threshold as i8))
}

/// Reads one operation of an expression: `Some` if it is `op` (an operation without operands).
fn expect(expr: &mut Slice<'_>, op: dw::DwOp) -> Option<()> {
    (expr.read_u8().ok()? == op.0).then_some(())
}

/// The ranges the FDEs of `.eh_frame` cover, to tell whether a `.debug_frame` FDE adds code.
struct Covered {
    /// Sorted by start, with the largest end up to each.
    starts: Vec<u64>,
    max_end: Vec<u64>,
}

impl Covered {
    fn new(spans: &[Span]) -> Self {
        let mut ranges: Vec<(u64, u64)> = spans.iter().map(|s| (s.start, s.end)).collect();
        ranges.sort_unstable();
        let max_end = ranges
            .iter()
            .scan(0, |max, r| {
                *max = r.1.max(*max);
                Some(*max)
            })
            .collect();
        Self {
            starts: ranges.iter().map(|r| r.0).collect(),
            max_end,
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        let before = self.starts.partition_point(|&s| s < end);
        before > 0 && self.max_end[before - 1] > start
    }
}

/// A span of one [`cfa::SIGNAL`] row for the signal trampoline `__restore_rt` where the object
/// names it and no FDE already makes it a signal frame (musl's has no FDE at all). It starts a
/// byte early, as glibc's FDE does, since a handler's return address is its first byte and the
/// walk looks a return address up one byte back; unless an FDE covers that byte.
fn restore_rt<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
    found: &Found,
) -> Option<Span> {
    let symbol = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(RESTORE_RT) && s.size() > 0)?;
    let (addr, end) = (symbol.address(), symbol.address() + symbol.size());
    let covering = |at: u64| found.spans.iter().find(|s| (s.start..s.end).contains(&at));
    let signal = |s: &Span| {
        found.raw[s.rows.clone()]
            .iter()
            .any(|r| r.1.cfa == cfa::SIGNAL)
    };
    if covering(addr).is_some_and(signal) {
        return None;
    }
    let start = match addr.checked_sub(1) {
        Some(before) if covering(before).is_none() => before,
        _ => addr,
    };
    Some(Span {
        start,
        end,
        rows: 0..0,
        source: Source::Symbol,
    })
}

/// The object's rows from the FDEs found: sorted, a [`cfa::NONE`] row at each FDE's end unless
/// the next starts there (where two overlap, the later one's rows win), alike rows merged, and
/// the `pc`s made relative to the lowest start, which is returned with them.
fn assemble(found: Found) -> anyhow::Result<(Vec<UnwindRow>, u64)> {
    let Found { mut spans, raw } = found;
    spans.sort_by_key(|s| (s.start, s.source));
    let mut out: Vec<(u64, UnwindRow)> = Vec::with_capacity(raw.len() + spans.len());
    let mut end: Option<u64> = None;
    for span in &spans {
        if let Some(end) = end
            && end < span.start
        {
            out.push((end, bare(cfa::NONE)));
        }
        while out.last().is_some_and(|&(at, _)| at >= span.start) {
            out.pop();
        }
        out.extend_from_slice(&raw[span.rows.clone()]);
        end = Some(span.end);
    }
    let Some(end) = end else {
        return Ok((Vec::new(), 0));
    };
    out.push((end, bare(cfa::NONE)));
    let base = out[0].0;
    let mut rows: Vec<UnwindRow> = Vec::with_capacity(out.len());
    for (at, row) in out {
        let Ok(pc) = u32::try_from(at - base) else {
            bail!("the code spans more than 4 GiB");
        };
        match rows.last_mut() {
            Some(last) if UnwindRow { pc: last.pc, ..row } == *last => {}
            Some(last) if last.pc == pc => *last = UnwindRow { pc, ..row },
            _ => rows.push(UnwindRow { pc, ..row }),
        }
    }
    Ok((rows, base))
}

/// Where the table base `table_base` (an object's virtual address) lies in a target that maps
/// the object at `map_start` from file offset `map_file_offset`: the `PT_LOAD` segment that holds
/// that offset gives the virtual address of the mapping's start (`offset - p_offset + p_vaddr`:
/// linkers do not keep `p_vaddr - p_offset` the same across segments), and the base is as far
/// from it in the target as in the file. The kernel maps a segment from the page its offset is
/// in, so a mapping can start below `p_offset`; where two segments share that page, the
/// executable one is meant (the walk only looks at executable mappings). None where no segment
/// holds the offset.
pub(crate) fn mapping_base(
    segments: &[LoadSegment],
    map_start: u64,
    map_file_offset: u64,
    table_base: u64,
) -> Option<u64> {
    const PAGE: u64 = 0x1000;
    let segment = segments
        .iter()
        .filter(|s| {
            let end = s.file_offset.saturating_add(s.file_size);
            (s.file_offset & !(PAGE - 1)..end).contains(&map_file_offset)
        })
        .max_by_key(|s| s.executable)?;
    let vaddr = map_file_offset
        .wrapping_sub(segment.file_offset)
        .wrapping_add(segment.vaddr);
    Some(table_base.wrapping_sub(vaddr).wrapping_add(map_start))
}

#[cfg(test)]
/// The mappings of `pid` that hold code a table can cover: executable, of a file (the path as
/// the target sees it; open it through `/proc/PID/map_files` or [`crate::tracee::host_path`])
/// or the vDSO ([`read_vdso`]).
pub(crate) fn code_regions(pid: i32) -> io::Result<Vec<Region>> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_regions(&maps)
        .into_iter()
        .filter(|r| r.executable && (r.path.starts_with('/') || r.path == VDSO))
        .collect())
}

#[cfg(test)]
/// The vDSO of `pid`: where it is mapped and its image (a whole ELF object, which has no file).
/// None when the target has none (`vdso=0`) or its memory cannot be read.
pub(crate) fn read_vdso(pid: i32) -> Option<(u64, Vec<u8>)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let vdso = parse_regions(&maps).into_iter().find(|r| r.path == VDSO)?;
    let mut image = vec![0u8; usize::try_from(vdso.end.checked_sub(vdso.start)?).ok()?];
    read_memory(pid, vdso.start, &mut image).ok()?;
    Some((vdso.start, image))
}

#[cfg(test)]
/// The tables of a target laid out as the kernel walk reads them: every object's rows once in
/// one array, and a [`Mapping`] per mapping, sorted by start.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub mappings: Vec<Mapping>,
    pub rows: Vec<UnwindRow>,
    /// Where each table's rows start in `rows`, by the table's address.
    placed: HashMap<usize, u32>,
}

#[cfg(test)]
impl Layout {
    /// Adds the mapping `[start, end)` of an object whose table base lies at `base` in the
    /// target; the table's rows are added on its first mapping. Fails when the rows would not
    /// fit the `u32` indexes of [`Mapping`].
    pub(crate) fn add(
        &mut self,
        start: u64,
        end: u64,
        base: u64,
        table: &Arc<ObjectTable>,
    ) -> anyhow::Result<()> {
        let rows = u32::try_from(table.rows.len())?;
        let first_row = match self.placed.get(&(Arc::as_ptr(table) as usize)) {
            Some(&first) => first,
            None => {
                let first = u32::try_from(self.rows.len())?;
                first.checked_add(rows).context("too many unwind rows")?;
                self.rows.extend_from_slice(&table.rows);
                self.placed.insert(Arc::as_ptr(table) as usize, first);
                first
            }
        };
        let at = self.mappings.partition_point(|m| m.start < start);
        self.mappings.insert(
            at,
            Mapping {
                start,
                end,
                base,
                first_row,
                rows,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
