//! Where to put a function's entry uprobe (and its uretprobe) on x86-64.
//!
//! The kernel's x86 uprobe code (arch/x86/kernel/uprobes.c) emulates a few
//! instructions at the probe site in the trap handler (about 1 us per hit) and
//! single-steps every other one out of line (10-13 us per hit). Distribution
//! builds start every function with `endbr64`, which is single-stepped, so a
//! probe on the symbol address is about ten times dearer than one placed on the
//! instruction after it, which is often an emulated `push` or `call`.
//!
//! A probe may only move past instructions that change nothing the profiler
//! observes: `endbr64`/`endbr32` and nops. Anything else may move the stack
//! pointer, and the profiler identifies a call (and the uretprobe hijacks the
//! return address) by the return-address slot on top of the stack, which must
//! still be there when the probe fires. The same offset serves the uretprobe:
//! the kernel takes the return address from the stack top when the entry
//! breakpoint is hit, wherever that breakpoint sits.
//!
//! Everything here is a pure function of the function's bytes; 64-bit code only.

mod x86_refused;

use std::path::Path;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, Instruction, InstructionInfoFactory,
    IntelFormatter, OpAccess, OpKind, Register,
};
use x86_refused::Refusal;

/// What a hit of a probe on an instruction costs, as the kernel handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CostClass {
    /// Emulated in the trap handler: `push reg`, `call rel32`, `jmp rel`, `jcc`, kernel nops.
    Emulated,
    /// Single-stepped out of line (everything else, `endbr64` included).
    SingleStepped,
}

impl CostClass {
    /// The name used in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CostClass::Emulated => "emulated",
            CostClass::SingleStepped => "single_stepped",
        }
    }
}

/// Where the probe goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Bytes from the symbol address to the probe (0 = the symbol address).
    pub offset: u64,
    /// Cost class of the instruction at the probe.
    pub class: CostClass,
    /// Intel-syntax disassembly of the instruction at the probe, e.g. "push rbp".
    pub instruction: String,
    /// Human-readable reason for the choice.
    pub reason: String,
    /// Why the kernel would refuse the probe: the function's first instruction is one it does
    /// not probe (see [`x86_refused`]) and the probe could not move past it. None: probeable.
    pub refused: Option<String>,
}

/// Chooses the entry-probe offset for the function at `func_addr`.
///
/// `code` holds the bytes read from the symbol address on; `func_size` is the
/// symbol size (0 when unknown). The probe moves past a leading run of
/// `endbr64`/nops onto an emulated instruction only when the whole function
/// decodes and no branch inside it could reach the skipped bytes.
///
/// Known limit: only branches inside `[func_addr, func_addr + func_size)` are
/// seen. A branch from another symbol (a `.cold` part, hand-written assembly)
/// to the instruction right after the entry `endbr64` would be counted as a
/// call; compilers do not emit such branches.
pub(crate) fn place(code: &[u8], func_addr: u64, func_size: u64) -> Placement {
    if func_size == 0 {
        return stay(code, func_addr, "size unknown".into());
    }
    let Some(body) = usize::try_from(func_size).ok().and_then(|n| code.get(..n)) else {
        let why = format!("only {} of {func_size} bytes readable", code.len());
        return stay(code, func_addr, why);
    };
    let insns = match decode_all(body, func_addr) {
        Ok(v) => v,
        Err(off) => {
            let why = format!("undecodable instruction at +{off:#x}");
            return stay(body, func_addr, why);
        }
    };
    let first = &insns[0];
    if let Kernel::Refused(why) = kernel_treatment(first.bytes(body)) {
        return past_refused(&insns, body, func_addr, why);
    }
    let first_text = format_insn(&first.ins);
    if kernel_treatment(first.bytes(body)) == Kernel::Emulated {
        return stay(body, func_addr, format!("{first_text} is emulated"));
    }
    let run = insns.iter().take_while(|i| skippable(&i.ins)).count();
    if run == 0 {
        let why = format!("{first_text} is single-stepped; no endbr64 or nop to skip");
        return stay(body, func_addr, why);
    }
    if run == insns.len() {
        return stay(body, func_addr, "function holds only endbr64/nops".into());
    }
    // Prefer the first real instruction. If the kernel single-steps it, a
    // kernel-emulated nop inside the skipped run is the next best spot (a
    // probe on it is cheap; what follows runs natively). Otherwise moving
    // gains nothing, and staying at the symbol avoids every risk below.
    let emulated = |i: &Insn| kernel_treatment(i.bytes(body)) == Kernel::Emulated;
    let after_run = format_insn(&insns[run].ins);
    let target = if emulated(&insns[run]) {
        run
    } else if let Some(j) = (1..run).find(|&j| emulated(&insns[j])) {
        j
    } else {
        let why =
            format!("{after_run} after {first_text} is single-stepped too; moving would not help");
        return stay(body, func_addr, why);
    };
    if let Some(why) = branch_hazard(&insns, body, func_addr, target) {
        return stay(body, func_addr, why);
    }
    let skipped: Vec<String> = insns[..target]
        .iter()
        .map(|i| format_insn(&i.ins))
        .collect();
    let text = format_insn(&insns[target].ins);
    let mut reason = format!("skipped {}; {text} is emulated", skipped.join(", "));
    if target != run {
        reason.push_str(&format!(" ({after_run} after it would be single-stepped)"));
    }
    let (offset, class) = (insns[target].off, CostClass::Emulated);
    Placement {
        offset,
        class,
        instruction: text,
        reason,
        refused: None,
    }
}

/// The kernel refuses a probe on the function's first instruction (a `lock` read-modify-write,
/// say): the probe moves onto the first instruction it accepts, past refused ones that fall
/// through to the next instruction and leave the stack pointer alone, so the new site is still
/// run once on every call with the return address on top of the stack. As for any move, no
/// branch in the function may land between the symbol and the probe (see [`branch_hazard`]).
/// Otherwise the function cannot be probed, and `refused` says why.
fn past_refused(insns: &[Insn], body: &[u8], addr: u64, first: Refusal) -> Placement {
    let first_text = format_insn(&insns[0].ins);
    let refused = |why: String| {
        let why = format!("the kernel refuses to probe {first_text} ({first}); {why}");
        Placement {
            offset: 0,
            class: CostClass::SingleStepped,
            instruction: first_text.clone(),
            reason: why.clone(),
            refused: Some(why),
        }
    };
    let mut passed = Vec::new();
    for (j, insn) in insns.iter().enumerate() {
        let kernel = kernel_treatment(insn.bytes(body));
        let text = format_insn(&insn.ins);
        if let Kernel::Refused(why) = kernel {
            if !passable(&insn.ins) {
                let what = if j == 0 {
                    "it".into()
                } else {
                    format!("{text} at +{:#x}", insn.off)
                };
                return refused(format!(
                    "the probe cannot move past {what}: it branches or moves the stack pointer"
                ));
            }
            passed.push(if j == 0 {
                text
            } else {
                format!("{text} ({why})")
            });
            continue;
        }
        if let Some(hazard) = branch_hazard(insns, body, addr, j) {
            return refused(format!("the probe cannot move past it: {hazard}"));
        }
        let class = if kernel == Kernel::Emulated {
            CostClass::Emulated
        } else {
            CostClass::SingleStepped
        };
        let how = match class {
            CostClass::Emulated => "emulated",
            CostClass::SingleStepped => "single-stepped",
        };
        return Placement {
            offset: insn.off,
            class,
            reason: format!(
                "moved past {}, which the kernel refuses to probe ({first}); {text} is {how}",
                passed.join(", ")
            ),
            instruction: text,
            refused: None,
        };
    }
    refused("so are the instructions after it".into())
}

/// Whether execution always goes on to the next instruction with the stack pointer unchanged.
fn passable(ins: &Instruction) -> bool {
    if ins.flow_control() != FlowControl::Next || ins.is_stack_instruction() {
        return false;
    }
    let mut factory = InstructionInfoFactory::new();
    let writes_sp = factory.info(ins).used_registers().iter().any(|used| {
        used.register().full_register() == Register::RSP
            && !matches!(
                used.access(),
                OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess
            )
    });
    !writes_sp
}

/// One decoded instruction; `off` is relative to the symbol address.
struct Insn {
    off: u64,
    ins: Instruction,
}

impl Insn {
    fn bytes<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        let start = self.off as usize;
        &body[start..start + self.ins.len()]
    }
}

/// Linear sweep over the whole function; `Err` carries the offset of the first
/// instruction that does not decode (or runs past the end of `body`).
fn decode_all(body: &[u8], addr: u64) -> Result<Vec<Insn>, u64> {
    let mut decoder = Decoder::with_ip(64, body, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let off = decoder.position() as u64;
        let ins = decoder.decode();
        if ins.is_invalid() {
            return Err(off);
        }
        out.push(Insn { off, ins });
    }
    if out.is_empty() { Err(0) } else { Ok(out) }
}

/// Instructions a probe may move past: they neither touch the stack nor any
/// state the profiler reads. `endbr32` is a nop in 64-bit code.
fn skippable(ins: &Instruction) -> bool {
    use Code::*;
    [
        Endbr64, Endbr32, Nopw, Nopd, Nopq, Nop_rm16, Nop_rm32, Nop_rm64,
    ]
    .contains(&ins.code())
}

/// Why moving the probe onto `insns[target]` could change what it counts.
///
/// A branch to the symbol address itself is harmless: it falls through the
/// skipped bytes onto the moved probe, so it is counted exactly as a probe on
/// the symbol would count it (e.g. a tail call turned into a loop). A branch
/// to any byte in (symbol, probe] would hit the moved probe but never the
/// original one, counting loop iterations as calls: refuse.
fn branch_hazard(insns: &[Insn], body: &[u8], addr: u64, target: usize) -> Option<String> {
    use Code::*;
    let probe_off = insns[target].off;
    let size = body.len() as u64;
    const INDIRECT_JUMPS: [Code; 6] = [
        Jmp_rm16, Jmp_rm32, Jmp_rm64, Jmp_m1616, Jmp_m1632, Jmp_m1664,
    ];
    // A tracked (non-`notrack`) indirect jump in code built for indirect branch
    // tracking may only land on an `endbr`; compilers mark jump-table jumps,
    // whose targets lack `endbr`, with `notrack`. So in a function entered via
    // `endbr64` with no other `endbr` up to the probe, tracked jumps cannot
    // reach the skipped bytes. Everywhere else an indirect jump's targets are
    // unknown and might be the probe address.
    let is_endbr64 = |i: &Insn| i.ins.code() == Endbr64;
    let ibt = is_endbr64(&insns[0]) && !insns[1..target].iter().any(is_endbr64);
    for i in insns {
        if INDIRECT_JUMPS.contains(&i.ins.code()) {
            // `notrack` is a 0x3e prefix on the jump.
            if !ibt || prefix_bytes(i.bytes(body)).0.contains(&0x3e) {
                let off = i.off;
                return Some(format!(
                    "indirect jump in function (+{off:#x}): targets unknown"
                ));
            }
        }
        for op in 0..i.ins.op_count() {
            if !matches!(
                i.ins.op_kind(op),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            ) {
                continue;
            }
            let t = i.ins.near_branch_target().wrapping_sub(addr);
            if t >= size {
                continue;
            }
            if insns.binary_search_by_key(&t, |x| x.off).is_err() {
                return Some(format!(
                    "branch at +{:#x} targets +{t:#x}, inside an instruction: decoding unreliable",
                    i.off
                ));
            }
            if t != 0 && t <= probe_off {
                return Some(format!(
                    "branch at +{:#x} targets +{t:#x}, which a moved probe would count as a call",
                    i.off
                ));
            }
        }
    }
    None
}

/// How the kernel treats a probe on an instruction (Linux 6.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Emulated,
    SingleStepped,
    /// Registration fails with ENOTSUPP (see [`x86_refused`]).
    Refused(Refusal),
}

/// The kernel's multi-byte nops (`x86_nops[]`, BYTES_NOP3..8 on 64-bit).
/// `branch_setup_xol_ops` emulates an instruction equal to `x86_nops[len]`
/// byte for byte since 2025 (present in 6.18); older kernels single-step these.
/// Other `0f 1f /0` forms are single-stepped. The 9..11 byte entries carry a CS
/// prefix, which `is_prefix_bad` refuses before.
const KERNEL_NOPS: [&[u8]; 6] = [
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// Splits legacy prefixes, an optional REX byte, and the rest (opcode on).
fn prefix_bytes(b: &[u8]) -> (&[u8], Option<u8>, &[u8]) {
    let legacy = |p: &&u8| {
        matches!(
            p,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3
        )
    };
    let n = b.iter().take_while(legacy).count();
    match b.get(n) {
        Some(&rex @ 0x40..=0x4f) => (&b[..n], Some(rex), &b[n + 1..]),
        _ => (&b[..n], None, &b[n..]),
    }
}

/// Whether the kernel refuses a uprobe on the instruction `insn` (its bytes, exactly).
#[cfg(test)]
pub(crate) fn kernel_refuses(insn: &[u8]) -> bool {
    x86_refused::refusal(insn).is_some()
}

/// Mirrors `arch_uprobe_analyze_insn` for one instruction's bytes.
fn kernel_treatment(b: &[u8]) -> Kernel {
    if let Some(why) = x86_refused::refusal(b) {
        return Kernel::Refused(why);
    }
    if KERNEL_NOPS.contains(&b) {
        return Kernel::Emulated;
    }
    let (legacy, rex, op) = prefix_bytes(b);
    match op {
        // `case 0x90` emulates any prefixed 0x90 as a nop. Newer kernels
        // (insn_is_nop) exclude REX.B (xchg r8d, eax) and F3 (pause), so those
        // count as single-stepped here; other forms (90, 66 90) are nops everywhere.
        [0x90] if rex.is_some_and(|r| r & 1 != 0) || legacy.contains(&0xf3) => {
            Kernel::SingleStepped
        }
        [0x90] => Kernel::Emulated,
        // branch_setup_xol_ops: call rel32, jmp rel8/rel32, jcc rel8/rel32 (a 0x66 prefix on
        // them is refused above).
        [0xe8 | 0xe9 | 0xeb | 0x70..=0x7f, ..] | [0x0f, 0x80..=0x8f, ..] => Kernel::Emulated,
        // push_setup_xol_ops: 0x50..0x57 alone (1 byte), or with exactly the
        // REX prefix 0x41 (r8..r15, 2 bytes); any other prefix is single-stepped.
        [0x50..=0x57] if b.len() == 1 || (b.len() == 2 && rex == Some(0x41)) => Kernel::Emulated,
        _ => Kernel::SingleStepped,
    }
}

fn format_insn(ins: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    let o = f.options_mut();
    o.set_hex_prefix("0x");
    o.set_hex_suffix("");
    o.set_uppercase_hex(false);
    o.set_branch_leading_zeros(false);
    o.set_space_after_operand_separator(true);
    let mut s = String::new();
    f.format(ins, &mut s);
    s
}

/// Keeps the probe on the symbol address, classifying the instruction there.
fn stay(code: &[u8], addr: u64, mut reason: String) -> Placement {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let ins = decoder.decode();
    let (kernel, instruction) = if ins.is_invalid() {
        (Kernel::SingleStepped, "(undecodable)".to_owned())
    } else {
        (kernel_treatment(&code[..ins.len()]), format_insn(&ins))
    };
    let mut refused = None;
    if let Kernel::Refused(why) = kernel {
        let why = format!(
            "the kernel refuses to probe {instruction} ({why}); the probe cannot move past it: \
             {reason}"
        );
        reason.clone_from(&why);
        refused = Some(why);
    }
    let class = if kernel == Kernel::Emulated {
        CostClass::Emulated
    } else {
        CostClass::SingleStepped
    };
    Placement {
        offset: 0,
        class,
        instruction,
        reason,
        refused,
    }
}

/// What a probed function is, as far as placement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Any function: the probe may only skip `endbr64` and nops (see [`place`]).
    Plain,
    /// A release function (`free`): the probe may also skip its NULL check
    /// (see [`past_null_check`]).
    Release,
    /// A lock function (`pthread_mutex_lock`), whose probes read only its first argument and the
    /// return address: the probe may also skip straight-line code that leaves both alone (see
    /// [`past_leading_code`]).
    FirstArgument,
}

/// Most bytes of a function read to decide where its probe goes.
const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// A function found by its symbol, and where its probe goes.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    /// File offset of the probe (the symbol's plus the placement's offset).
    pub probe_offset: u64,
    pub placement: Placement,
}

/// The functions of the file at `path` to probe, one per entry of `looked_up` (blazesym's
/// lookup of a list of names in it): the first function symbol with an address and a file
/// offset, placed for `role(i)`; None for a name without one, and for a name whose address an
/// earlier name has (an alias is probed once, under its first name).
pub(crate) fn place_symbols(
    path: &Path,
    looked_up: Vec<Vec<blazesym::inspect::SymInfo<'_>>>,
    role: impl Fn(usize) -> Role,
) -> Vec<Option<Placed>> {
    let mut seen: Vec<u64> = Vec::new();
    looked_up
        .into_iter()
        .enumerate()
        .map(|(i, syms)| {
            let sym = syms
                .into_iter()
                .find(|s| s.sym_type == blazesym::SymType::Function && s.addr != 0)?;
            let file_offset = sym.file_offset?;
            if seen.contains(&sym.addr) {
                return None;
            }
            seen.push(sym.addr);
            let size = sym.size.unwrap_or(0) as u64;
            let placement = place_in_file(path, file_offset, sym.addr, size, role(i));
            Some(Placed {
                probe_offset: file_offset + placement.offset,
                placement,
            })
        })
        .collect()
}

/// Where the probes of the function at `addr` (`size` bytes, at `file_offset` in the file at
/// `path`) go, from its code in the file. Every probe the profiler attaches to a function is
/// placed here: traced functions and allocator functions alike.
pub(crate) fn place_in_file(
    path: &Path,
    file_offset: u64,
    addr: u64,
    size: u64,
    role: Role,
) -> Placement {
    let len = size.clamp(16, MAX_FUNCTION_BYTES);
    let code = read_at(path, file_offset, len).unwrap_or_default();
    let placed = place(&code, addr, size);
    if role == Role::Release && placed.class != CostClass::Emulated {
        return past_null_check(&code, addr, size).unwrap_or(placed);
    }
    if role == Role::FirstArgument
        && placed.class != CostClass::Emulated
        && placed.refused.is_none()
    {
        return past_leading_code(&code, addr, size).unwrap_or(placed);
    }
    placed
}

/// Most instructions a [`Role::FirstArgument`] probe may move past.
const MAX_LEADING: usize = 8;

/// glibc's `pthread_mutex_lock` begins `mov eax, [rdi+0x10]`, which the kernel single-steps
/// (12–22 µs a hit here, where an emulated instruction costs ~1 µs): the probe moves onto the
/// first emulated instruction (a `jcc`, `jmp` or `push`) of a straight run of instructions that
/// fall through, leave the stack pointer and `rdi` alone and that nothing in the function
/// branches into. There every call passes once, with the return address still on top of the
/// stack (so a return probe there works) and the first argument still in `rdi`.
fn past_leading_code(code: &[u8], addr: u64, size: u64) -> Option<Placement> {
    let body = code.get(..usize::try_from(size).ok()?)?;
    let insns = decode_all(body, addr).ok()?;
    let mut factory = InstructionInfoFactory::new();
    let mut writes_rdi = |ins: &Instruction| {
        factory.info(ins).used_registers().iter().any(|used| {
            used.register().full_register() == Register::RDI
                && !matches!(
                    used.access(),
                    OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess
                )
        })
    };
    for (j, insn) in insns.iter().enumerate().take(MAX_LEADING) {
        if j > 0 && kernel_treatment(insn.bytes(body)) == Kernel::Emulated {
            if branch_hazard(&insns, body, addr, j).is_some() {
                return None;
            }
            let skipped: Vec<String> = insns[..j].iter().map(|i| format_insn(&i.ins)).collect();
            let text = format_insn(&insn.ins);
            return Some(Placement {
                offset: insn.off,
                class: CostClass::Emulated,
                reason: format!(
                    "skipped {}, which leave the stack pointer and the first argument alone; \
                     {text} is emulated",
                    skipped.join(", ")
                ),
                instruction: text,
                refused: None,
            });
        }
        if !passable(&insn.ins) || writes_rdi(&insn.ins) {
            return None;
        }
    }
    None
}

/// A release function that begins with `test rdi, rdi; je` (glibc's `free`: releasing NULL does
/// nothing) may have its probe past that check, where the instruction is often one the kernel
/// emulates instead of single-stepping (a `push`: several times cheaper a call). A release of
/// NULL is then not seen, which changes nothing but its call count. Nothing in the function may
/// branch to the skipped instructions' successors up to the probe, or the probe would count a
/// call twice; an indirect jump (targets unknown) rules it out.
fn past_null_check(code: &[u8], addr: u64, size: u64) -> Option<Placement> {
    use iced_x86::Mnemonic;
    const INDIRECT_JUMPS: [Code; 6] = [
        Code::Jmp_rm16,
        Code::Jmp_rm32,
        Code::Jmp_rm64,
        Code::Jmp_m1616,
        Code::Jmp_m1632,
        Code::Jmp_m1664,
    ];
    let body = code.get(..usize::try_from(size).ok()?)?;
    let insns: Vec<_> = Decoder::with_ip(64, body, addr, DecoderOptions::NONE)
        .into_iter()
        .collect();
    if insns.is_empty() || insns.iter().any(|i| i.is_invalid()) {
        return None;
    }
    let mut i = usize::from(insns[0].mnemonic() == Mnemonic::Endbr64);
    let test = insns.get(i)?;
    let rdi = |n: u32| test.op_kind(n) == OpKind::Register && test.op_register(n) == Register::RDI;
    if test.mnemonic() != Mnemonic::Test || !(rdi(0) && rdi(1)) {
        return None;
    }
    i += 1;
    if insns.get(i)?.mnemonic() != Mnemonic::Je {
        return None;
    }
    let after = insns.get(i + 1)?;
    let skipped = (after.ip() - addr) as usize;
    let rest = place(&code[skipped..], after.ip(), size - skipped as u64);
    if rest.class != CostClass::Emulated {
        return None;
    }
    let probe = after.ip() + rest.offset;
    for ins in &insns {
        if INDIRECT_JUMPS.contains(&ins.code()) {
            return None;
        }
        let near = (0..ins.op_count()).any(|op| {
            matches!(
                ins.op_kind(op),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        let target = ins.near_branch_target();
        if near && target > addr && target <= probe {
            return None;
        }
    }
    Some(Placement {
        offset: probe - addr,
        class: CostClass::Emulated,
        instruction: rest.instruction,
        reason: format!(
            "skipped the NULL check (free(NULL) does nothing); {}",
            rest.reason
        ),
        refused: None,
    })
}

fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0; len as usize];
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests;
