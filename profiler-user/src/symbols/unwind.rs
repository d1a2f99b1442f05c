//! Unwinds the user stack of a thread of another process from outside, from the pc and sp that
//! /proc/PID/task/TID/syscall gives, with the modules' `.eh_frame` call-frame information: most
//! code, glibc included, keeps no frame pointer, and a thread of a process that is already
//! deadlocked will never reach one of our probes to have its stack taken by the kernel.
//!
//! The target is neither stopped nor traced: its memory is read while it runs, which is sound for
//! the threads this is for (blocked, so their stacks do not change) and at worst gives a short or
//! wrong tail for a thread that moves meanwhile.

use std::{collections::HashMap, fs, fs::File, path::Path};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, Evaluation, EvaluationResult,
    LittleEndian, Location, Register, RegisterRule, UnwindContext, UnwindExpression, UnwindSection,
    Value,
};
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register as IcedReg,
};
use object::{Object, ObjectSection, ObjectSegment, ReadCache, ReadRef};

use crate::tracee::{
    Region, host_path, parse_regions,
    task::{read_memory, read_u64},
};

/// x86-64 DWARF register numbers: rbp, rsp, and the return address column (rip).
const RBP: usize = 6;
const RSP: usize = 7;
const RIP: usize = 16;
/// The registers tracked: the 16 general-purpose ones and rip. Any of them can be the base of a
/// CFA (r10 in a function that realigns its stack) or of an expression.
const TRACKED: usize = 17;

/// What is known of the registers of one frame (None: unknown).
type Registers = [Option<u64>; TRACKED];

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// One `PT_LOAD` segment: where its bytes lie in the file and where it expects to be loaded.
#[derive(Debug, Clone, Copy)]
struct Segment {
    file_offset: u64,
    file_size: u64,
    vaddr: u64,
}

/// The unwind tables of one module (a copy of its `.eh_frame` and `.eh_frame_hdr`, with the
/// addresses the file links them at) and its segments, to turn a target address into one of the
/// file's virtual addresses.
#[derive(Debug)]
struct Tables {
    segments: Vec<Segment>,
    eh_frame: Vec<u8>,
    eh_frame_addr: u64,
    /// The binary-search table over the FDEs, when the module has one (it nearly always does).
    eh_frame_hdr: Option<(Vec<u8>, u64)>,
    text_addr: u64,
}

impl Tables {
    /// Reads the tables of an ELF image; None if it has no `.eh_frame`.
    fn parse<'data, R: ReadRef<'data>>(data: R) -> Option<Self> {
        let file = object::File::parse(data).ok()?;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            Some((s.data().ok()?.to_vec(), s.address()))
        };
        let (eh_frame, eh_frame_addr) = section(".eh_frame")?;
        let segments = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment {
                    file_offset,
                    file_size,
                    vaddr: s.address(),
                }
            })
            .collect();
        Some(Self {
            segments,
            eh_frame,
            eh_frame_addr,
            eh_frame_hdr: section(".eh_frame_hdr"),
            text_addr: file.section_by_name(".text").map_or(0, |s| s.address()),
        })
    }

    /// The file's virtual address of target address `addr` in `region`: the offset in the file
    /// (the load bias of a PIE or shared object removed), then moved by the segment's
    /// `p_vaddr - p_offset`, which linkers do not keep equal.
    fn vaddr(&self, region: &Region, addr: u64) -> Option<u64> {
        let offset = addr.checked_sub(region.start)? + region.file_offset;
        let seg = self
            .segments
            .iter()
            .find(|s| (s.file_offset..s.file_offset + s.file_size).contains(&offset))?;
        Some(offset - seg.file_offset + seg.vaddr)
    }
}

/// A module's identity: the same path can name another file after an upgrade, and two
/// processes can map the same file through different paths (containers), so the device and
/// inode are part of it. The vdso, with no file, is keyed by its name (one per kernel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModuleKey {
    path: String,
    dev: String,
    inode: u64,
}

/// Unwinds stacks of other processes, keeping each module's tables (parsed once) across calls.
pub(crate) struct Unwinder {
    /// None: the module has no usable tables (not retried).
    modules: HashMap<ModuleKey, Option<Tables>>,
    ctx: Box<UnwindContext<usize>>,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    pub(crate) fn new() -> Self {
        Self {
            modules: HashMap::new(),
            ctx: Box::new(UnwindContext::new()),
        }
    }

    /// The stack of a thread of `pid` stopped at `pc` with stack pointer `sp`: absolute
    /// addresses in the target, `pc` first, then the return addresses, outward, at most
    /// `max_frames`. A return address points after its call: symbolize `addr - 1` for the frames
    /// after the first, as the other families do for kernel-taken stacks (the frame under a
    /// signal trampoline is an exact pc, one byte off at worst).
    ///
    /// Stops where the call-frame information does (rip undefined, as at `_start` or a thread's
    /// `clone3`), at a return address of 0 or outside executable memory, at a stack pointer that
    /// does not move outward, where a rule needs a register not known, or at a module without
    /// `.eh_frame`. rbp is unknown at the start (the syscall file does not give it); the first
    /// frame whose CFA is rbp-based gets it from its prologue ([`frame_pointer`]), and the saved
    /// copies carry it outward from there.
    #[cfg(test)]
    pub(crate) fn unwind(&mut self, pid: i32, pc: u64, sp: u64, max_frames: usize) -> Vec<u64> {
        self.unwind_hidden(pid, pc, sp, max_frames, &[])
    }

    /// [`Unwinder::unwind`], where a return address that is the kernel's uretprobe trampoline
    /// (the `[uprobes]` mapping: a return probe swapped it in at the call's entry) is replaced
    /// by the next of `hidden`, the real ones innermost first; without one left, the walk stops
    /// there.
    pub(crate) fn unwind_hidden(
        &mut self,
        pid: i32,
        pc: u64,
        sp: u64,
        max_frames: usize,
        hidden: &[u64],
    ) -> Vec<u64> {
        let mut hidden = hidden.iter().copied();
        if pc == 0 || max_frames == 0 {
            return Vec::new();
        }
        let mut frames = vec![pc];
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return frames;
        };
        let regions: Vec<Region> = parse_regions(&maps)
            .into_iter()
            .filter(|r| r.executable)
            .collect();
        let mut regs: Registers = [None; TRACKED];
        regs[RSP] = Some(sp);
        regs[RIP] = Some(pc);
        // The first pc is where the thread is; a later one is a return address, whose call
        // (the instruction before it) is what its frame is in, unless the frame below was a
        // signal trampoline, which holds the exact pc the signal interrupted.
        let mut exact = true;
        while frames.len() < max_frames {
            let (Some(pc), Some(sp)) = (regs[RIP], regs[RSP]) else {
                break;
            };
            let lookup = if exact { pc } else { pc - 1 };
            let Some(region) = regions.iter().find(|r| (r.start..r.end).contains(&lookup)) else {
                break;
            };
            let Some(tables) = tables(&mut self.modules, pid, region) else {
                break;
            };
            let Some(vaddr) = tables.vaddr(region, lookup) else {
                break;
            };
            let frame = Frame {
                pid,
                tables,
                vaddr,
                bias: lookup - vaddr,
            };
            let Some((next, signal)) = frame.step(&mut self.ctx, &regs) else {
                break;
            };
            let (Some(mut ra), Some(next_sp)) = (next[RIP], next[RSP]) else {
                break;
            };
            let mut next = next;
            if regions
                .iter()
                .any(|r| r.path == TRAMPOLINE && (r.start..r.end).contains(&ra))
            {
                let Some(real) = hidden.next() else {
                    break;
                };
                ra = real;
                next[RIP] = Some(real);
            }
            let lookup = if signal { ra } else { ra.wrapping_sub(1) };
            if ra == 0
                || next_sp <= sp
                || !regions.iter().any(|r| (r.start..r.end).contains(&lookup))
            {
                break;
            }
            frames.push(ra);
            regs = next;
            exact = signal;
        }
        frames
    }
}

/// The mapping of the kernel's uretprobe trampoline.
const TRAMPOLINE: &str = "[uprobes]";

/// The tables of the module mapped at `region`, parsed on first use.
fn tables<'a>(
    modules: &'a mut HashMap<ModuleKey, Option<Tables>>,
    pid: i32,
    region: &Region,
) -> Option<&'a Tables> {
    let key = ModuleKey {
        path: region.path.clone(),
        dev: if region.path == "[vdso]" {
            String::new()
        } else {
            region.dev.clone()
        },
        inode: region.inode,
    };
    modules
        .entry(key)
        .or_insert_with(|| load(pid, region))
        .as_ref()
}

/// Reads the tables of the module mapped at `region`: the file itself (through
/// /proc/PID/map_files, which reaches a deleted file or one in another mount namespace, else
/// through the target's root), or for the vdso, which has no file, its image in the target.
fn load(pid: i32, region: &Region) -> Option<Tables> {
    if region.path == "[vdso]" {
        let mut image = vec![0u8; usize::try_from(region.end - region.start).ok()?];
        read_memory(pid, region.start, &mut image).ok()?;
        return Tables::parse(image.as_slice());
    }
    if !region.path.starts_with('/') {
        return None;
    }
    let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", region.start, region.end);
    let path = region.path.trim_end_matches(" (deleted)");
    let file = File::open(map_file)
        .or_else(|_| File::open(host_path(pid, Path::new(path))))
        .ok()?;
    let cache = ReadCache::new(file);
    Tables::parse(&cache)
}

/// One frame being unwound: its module's tables, the file address of its pc (or call site), and
/// the load bias (target address minus file address).
struct Frame<'a> {
    pid: i32,
    tables: &'a Tables,
    vaddr: u64,
    bias: u64,
}

impl Frame<'_> {
    /// The caller's registers, from this frame's `regs`; also whether this frame is a signal
    /// trampoline. None where the tables have no entry for the address or a rule cannot be
    /// evaluated.
    fn step(&self, ctx: &mut UnwindContext<usize>, regs: &Registers) -> Option<(Registers, bool)> {
        let (pid, tables, vaddr) = (self.pid, self.tables, self.vaddr);
        let mut eh_frame = EhFrame::new(&tables.eh_frame, LittleEndian);
        eh_frame.set_address_size(8);
        let mut bases = BaseAddresses::default()
            .set_eh_frame(tables.eh_frame_addr)
            .set_text(tables.text_addr);
        let hdr = tables.eh_frame_hdr.as_ref().and_then(|(data, addr)| {
            bases = bases.clone().set_eh_frame_hdr(*addr);
            EhFrameHdr::new(data, LittleEndian).parse(&bases, 8).ok()
        });
        let get_cie = EhFrame::cie_from_offset;
        let fde = match hdr.as_ref().and_then(|h| h.table()) {
            Some(table) => table.fde_for_address(&eh_frame, &bases, vaddr, get_cie),
            None => eh_frame.fde_for_address(&bases, vaddr, get_cie),
        }
        .ok()?;
        let row = fde
            .unwind_info_for_address(&eh_frame, &bases, ctx, vaddr)
            .ok()?;
        let mut regs = *regs;
        if let CfaRule::RegisterAndOffset { register, .. } = row.cfa()
            && usize::from(register.0) == RBP
            && regs[RBP].is_none()
        {
            regs[RBP] = frame_pointer(
                pid,
                fde.initial_address().wrapping_add(self.bias),
                vaddr.wrapping_add(self.bias),
                regs[RSP]?,
            );
        }
        let regs = &regs;
        let eval = Evaluator {
            pid,
            eh_frame: &eh_frame,
            encoding: fde.cie().encoding(),
            regs,
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                (*regs.get(usize::from(register.0))?)?.wrapping_add_signed(*offset)
            }
            CfaRule::Expression(expr) => eval.run(expr, None)?,
        };
        // Registers without a rule keep their value: right for the callee-saved ones (rbx, rbp,
        // r12-r15), possibly stale for the others, which compiled code does not rely on across a
        // call, so no caller's rule reads them.
        let mut next = *regs;
        next[RSP] = Some(cfa);
        let ra_column = usize::from(fde.cie().return_address_register().0);
        // The return address has no value unless a rule gives one (rip undefined ends the stack).
        next[RIP] = None;
        for (column, value) in next.iter_mut().enumerate() {
            let column = if column == RIP { ra_column } else { column };
            let Ok(number) = u16::try_from(column) else {
                continue;
            };
            let Some(rule) = row.register(Register(number)) else {
                continue;
            };
            *value = match rule {
                RegisterRule::Undefined | RegisterRule::Architectural => None,
                RegisterRule::SameValue => regs.get(column).copied().flatten(),
                RegisterRule::Offset(offset) => read_u64(pid, cfa.wrapping_add_signed(offset)).ok(),
                RegisterRule::ValOffset(offset) => Some(cfa.wrapping_add_signed(offset)),
                RegisterRule::Register(other) => regs.get(usize::from(other.0)).copied().flatten(),
                RegisterRule::Expression(expr) => eval
                    .run(&expr, Some(cfa))
                    .and_then(|addr| read_u64(pid, addr).ok()),
                RegisterRule::ValExpression(expr) => eval.run(&expr, Some(cfa)),
                RegisterRule::Constant(value) => Some(value),
            };
        }
        Some((next, fde.is_signal_trampoline()))
    }
}

/// Recovers the frame pointer of a frame whose CFA is rbp-based when rbp is not known, as at the
/// first frame-pointer function of a stack (the syscall file gives sp and pc only): from the
/// function's prologue, read in the target from its start up to `pc` (`push rbp; mov rbp, rsp`,
/// then pushes and `sub rsp, N`), rbp lies a fixed distance above the stack pointer the body
/// runs with. None for a prologue of another shape (a realigned or dynamically sized frame).
fn frame_pointer(pid: i32, start: u64, pc: u64, sp: u64) -> Option<u64> {
    const MAX_PROLOGUE: usize = 64;
    let len = usize::try_from(pc.checked_sub(start)?)
        .ok()?
        .min(MAX_PROLOGUE);
    let mut code = vec![0u8; len];
    read_memory(pid, start, &mut code).ok()?;
    // Bytes pushed since entry, and that count when rbp was set.
    let mut pushed: u64 = 0;
    let mut rbp_at = None;
    let mut decoder = Decoder::with_ip(64, &code, start, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() || insn.flow_control() != FlowControl::Next {
            break;
        }
        let op_reg = |n: u32| (insn.op_kind(n) == OpKind::Register).then(|| insn.op_register(n));
        match insn.mnemonic() {
            Mnemonic::Endbr64 => {}
            Mnemonic::Push if op_reg(0).is_some_and(|r| r.size() == 8) => pushed += 8,
            Mnemonic::Mov if op_reg(0) == Some(IcedReg::RBP) && op_reg(1) == Some(IcedReg::RSP) => {
                rbp_at = Some(pushed);
            }
            Mnemonic::Sub
                if op_reg(0) == Some(IcedReg::RSP) && insn.op_kind(1) != OpKind::Register =>
            {
                pushed += insn.immediate(1);
            }
            // Anything else that moves rsp or rbp (`and rsp, -32`, `lea rbp, ...`) is a frame
            // this cannot place.
            _ if op_reg(0).is_some_and(|r| r == IcedReg::RSP || r == IcedReg::RBP) => return None,
            // The body has begun once rbp is set and something else is done.
            _ if rbp_at.is_some() => break,
            _ => {}
        }
    }
    sp.checked_add(pushed.checked_sub(rbp_at?)?)
}

/// Evaluates the DWARF expressions of one frame's rules (glibc's signal trampoline and PLT
/// entries use them) against its known registers and the target's memory.
struct Evaluator<'a> {
    pid: i32,
    eh_frame: &'a EhFrame<Slice<'a>>,
    encoding: gimli::Encoding,
    regs: &'a Registers,
}

impl Evaluator<'_> {
    /// Runs bounded: a malformed expression cannot loop forever.
    const MAX_STEPS: u32 = 1_000;

    /// The value `expr` computes, with the CFA pushed first for a register rule; None where it
    /// needs an unknown register, unreadable memory, or an operation an unwinder cannot give.
    fn run(&self, expr: &UnwindExpression<usize>, cfa: Option<u64>) -> Option<u64> {
        let expr = expr.get(self.eh_frame).ok()?;
        let mut eval: Evaluation<Slice<'_>> = expr.evaluation(self.encoding);
        eval.set_max_iterations(Self::MAX_STEPS);
        if let Some(cfa) = cfa {
            eval.set_initial_value(cfa);
        }
        let mut state = eval.evaluate().ok()?;
        loop {
            state = match state {
                EvaluationResult::Complete => break,
                EvaluationResult::RequiresRegister { register, .. } => {
                    let value = (*self.regs.get(usize::from(register.0))?)?;
                    eval.resume_with_register(Value::Generic(value)).ok()?
                }
                EvaluationResult::RequiresMemory { address, size, .. } => {
                    let mut buf = [0u8; 8];
                    let len = usize::from(size).min(8);
                    read_memory(self.pid, address, &mut buf[..len]).ok()?;
                    let value = Value::Generic(u64::from_le_bytes(buf));
                    eval.resume_with_memory(value).ok()?
                }
                EvaluationResult::RequiresCallFrameCfa => {
                    eval.resume_with_call_frame_cfa(cfa?).ok()?
                }
                _ => return None,
            };
        }
        match eval.result().first()?.location {
            Location::Address { address } => Some(address),
            Location::Value { value } => value.to_u64(!0).ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "unwind_tests.rs"]
mod tests;
