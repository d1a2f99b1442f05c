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

use std::path::Path;

use iced_x86::{Code, Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, OpKind};

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
    }
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
    /// Registration fails (`is_prefix_bad`, or a 0x66-prefixed branch).
    Refused,
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

/// Mirrors `arch_uprobe_analyze_insn` for one instruction's bytes.
fn kernel_treatment(b: &[u8]) -> Kernel {
    let (legacy, rex, op) = prefix_bytes(b);
    // uprobe_init_insn -> is_prefix_bad: ES/CS/SS/DS segment or LOCK prefix.
    if legacy
        .iter()
        .any(|p| [0x26, 0x2e, 0x36, 0x3e, 0xf0].contains(p))
    {
        return Kernel::Refused;
    }
    if KERNEL_NOPS.contains(&b) {
        return Kernel::Emulated;
    }
    match op {
        // `case 0x90` emulates any prefixed 0x90 as a nop. Newer kernels
        // (insn_is_nop) exclude REX.B (xchg r8d, eax) and F3 (pause), so those
        // count as single-stepped here; other forms (90, 66 90) are nops everywhere.
        [0x90] if rex.is_some_and(|r| r & 1 != 0) || legacy.contains(&0xf3) => {
            Kernel::SingleStepped
        }
        [0x90] => Kernel::Emulated,
        // branch_setup_xol_ops: call rel32, jmp rel8/rel32, jcc rel8/rel32;
        // any 0x66 prefix (16-bit operand) on these fails with -ENOTSUPP.
        [0xe8 | 0xe9 | 0xeb | 0x70..=0x7f, ..] | [0x0f, 0x80..=0x8f, ..]
            if legacy.contains(&0x66) =>
        {
            Kernel::Refused
        }
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
    if kernel == Kernel::Refused {
        reason.push_str("; the kernel refuses to probe this instruction (prefix)");
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
}

/// Most bytes of a function read to decide where its probe goes.
const MAX_FUNCTION_BYTES: u64 = 1 << 20;

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
    placed
}

/// A release function that begins with `test rdi, rdi; je` (glibc's `free`: releasing NULL does
/// nothing) may have its probe past that check, where the instruction is often one the kernel
/// emulates instead of single-stepping (a `push`: several times cheaper a call). A release of
/// NULL is then not seen, which changes nothing but its call count. Nothing in the function may
/// branch to the skipped instructions' successors up to the probe, or the probe would count a
/// call twice; an indirect jump (targets unknown) rules it out.
fn past_null_check(code: &[u8], addr: u64, size: u64) -> Option<Placement> {
    use iced_x86::{Mnemonic, Register};
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
mod tests {
    use super::*;

    const ENDBR: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa];
    const ADDR: u64 = 0x401000;
    const E: CostClass = CostClass::Emulated;
    const S: CostClass = CostClass::SingleStepped;

    /// Places a function made of `parts`, sized exactly.
    fn at(parts: &[&[u8]]) -> Placement {
        let code = parts.concat();
        place(&code, ADDR, code.len() as u64)
    }

    #[track_caller]
    fn check(p: &Placement, offset: u64, class: CostClass, insn: &str) {
        let got = (p.offset, p.class, p.instruction.as_str());
        assert_eq!(got, (offset, class, insn), "{p:?}");
    }

    #[test]
    fn plain_push_rbp_stays_and_is_emulated() {
        // push rbp; mov rbp, rsp; pop rbp; ret
        let p = at(&[&[0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3]]);
        check(&p, 0, E, "push rbp");
        assert_eq!(p.reason, "push rbp is emulated");
    }

    #[test]
    fn endbr_then_push_or_call_moves() {
        let p = at(&[ENDBR, &[0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3]]);
        check(&p, 4, E, "push rbp");
        assert_eq!(p.reason, "skipped endbr64; push rbp is emulated");
        // call out of the function; ret
        check(
            &at(&[ENDBR, &[0xe8, 0x10, 0, 0, 0, 0xc3]]),
            4,
            E,
            "call 0x401019",
        );
        // push r12 (REX 0x41); pop r12; ret
        check(
            &at(&[ENDBR, &[0x41, 0x54, 0x41, 0x5c, 0xc3]]),
            4,
            E,
            "push r12",
        );
        // A recursive call to the symbol itself is counted either way.
        let recursive = [0x53, 0xe8, 0xf6, 0xff, 0xff, 0xff, 0x5b, 0xc3];
        check(&at(&[ENDBR, &recursive]), 4, E, "push rbx");
    }

    #[test]
    fn other_push_encodings_are_single_stepped() {
        // REX 0x40 / 0x48 or a 0x66 prefix: push_setup_xol_ops declines.
        for push in [[0x40, 0x55], [0x48, 0x55], [0x66, 0x55]] {
            let p = at(&[ENDBR, &push, &[0xc3]]);
            assert_eq!((p.offset, p.class), (0, S), "{p:?}");
        }
    }

    #[test]
    fn endbr_then_sub_rsp_stays() {
        // sub rsp, 8; add rsp, 8; ret
        let p = at(&[
            ENDBR,
            &[0x48, 0x83, 0xec, 0x08, 0x48, 0x83, 0xc4, 0x08, 0xc3],
        ]);
        check(&p, 0, S, "endbr64");
        let why = "sub rsp, 8 after endbr64 is single-stepped too; moving would not help";
        assert_eq!(p.reason, why);
    }

    #[test]
    fn leaf_function_stays() {
        // lea eax, [rdi+1]; ret
        check(&at(&[ENDBR, &[0x8d, 0x47, 0x01, 0xc3]]), 0, S, "endbr64");
        let p = at(&[&[0x8d, 0x47, 0x01, 0xc3]]);
        check(&p, 0, S, "lea eax, [rdi+1]");
        assert!(p.reason.contains("no endbr64 or nop to skip"), "{p:?}");
    }

    #[test]
    fn o0_style_function() {
        // push rbp; mov rbp, rsp; mov [rbp-4], edi; mov eax, [rbp-4]; add eax, 1; pop rbp; ret
        let body = [
            0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b, 0x45, 0xfc, 0x83, 0xc0, 0x01,
        ];
        check(&at(&[ENDBR, &body, &[0x5d, 0xc3]]), 4, E, "push rbp");
    }

    #[test]
    fn nops_after_endbr_are_skipped() {
        let p = at(&[ENDBR, &[0x90, 0x53, 0x5b, 0xc3]]);
        check(&p, 5, E, "push rbx");
        assert_eq!(p.reason, "skipped endbr64, nop; push rbx is emulated");
        check(
            &at(&[ENDBR, &[0x0f, 0x1f, 0x44, 0, 0, 0x53, 0x5b, 0xc3]]),
            9,
            E,
            "push rbx",
        );
        let nop9 = [0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        check(
            &at(&[ENDBR, &nop9, &[0x41, 0x57, 0x41, 0x5f, 0xc3]]),
            13,
            E,
            "push r15",
        );
    }

    #[test]
    fn emulated_nop_is_used_when_next_instruction_is_single_stepped() {
        // endbr64; nop; nop; lea eax, [rdi+1]; ret (patchable function entry)
        let p = at(&[ENDBR, &[0x90, 0x90, 0x8d, 0x47, 0x01, 0xc3]]);
        check(&p, 4, E, "nop");
        assert!(
            p.reason
                .ends_with("(lea eax, [rdi+1] after it would be single-stepped)")
        );
        // Only a nop the kernel single-steps: nothing gained, stay.
        let nop9 = [0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        check(&at(&[ENDBR, &nop9, &[0xc3]]), 0, S, "endbr64");
    }

    #[test]
    fn branch_to_instruction_after_endbr_keeps_symbol() {
        // +4: call out; +9: test eax, eax; +b: je +4; +d: ret
        let p = at(&[ENDBR, &[0xe8, 0xf7, 0, 0, 0, 0x85, 0xc0, 0x74, 0xf7, 0xc3]]);
        check(&p, 0, S, "endbr64");
        let why = "branch at +0xb targets +0x4, which a moved probe would count as a call";
        assert_eq!(p.reason, why);
        // A target inside the skipped nops is just as bad: +7: je +4
        let p = at(&[ENDBR, &[0x90, 0x53, 0x5b, 0x74, 0xfb, 0xc3]]);
        assert!(p.reason.contains("targets +0x4"), "{p:?}");
    }

    #[test]
    fn branch_to_symbol_start_may_move() {
        // Same loop, but je jumps back to the endbr64 at +0.
        let p = at(&[ENDBR, &[0xe8, 0xf7, 0, 0, 0, 0x85, 0xc0, 0x74, 0xf3, 0xc3]]);
        check(&p, 4, E, "call 0x401100");
    }

    #[test]
    fn branch_into_the_middle_of_an_instruction_keeps_symbol() {
        // endbr64; push rbx; jmp +2 (inside the endbr64)
        let p = at(&[ENDBR, &[0x53, 0xeb, 0xfb]]);
        assert_eq!(p.offset, 0);
        assert!(p.reason.contains("inside an instruction"), "{p:?}");
    }

    #[test]
    fn indirect_jumps() {
        // notrack jmp rax (jump table): targets unknown, stay.
        let p = at(&[ENDBR, &[0x53, 0x5b, 0x3e, 0xff, 0xe0]]);
        check(&p, 0, S, "endbr64");
        assert_eq!(
            p.reason,
            "indirect jump in function (+0x6): targets unknown"
        );
        // A tracked jmp rax in an endbr64 function may only land on an endbr64.
        check(&at(&[ENDBR, &[0x53, 0x5b, 0xff, 0xe0]]), 4, E, "push rbx");
        // Without an entry endbr64 there is no such guarantee.
        let nop9 = [0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        let p = at(&[&nop9, &[0x53, 0x5b, 0xff, 0xe0]]);
        assert_eq!(p.offset, 0);
        assert!(p.reason.starts_with("indirect jump in function"), "{p:?}");
        // An indirect call returns to the next instruction: harmless.
        check(
            &at(&[ENDBR, &[0x53, 0xff, 0xd0, 0x5b, 0xc3]]),
            4,
            E,
            "push rbx",
        );
    }

    #[test]
    fn unknown_size_truncated_and_undecodable_stay() {
        let code = [ENDBR, &[0x55, 0x5d, 0xc3]].concat();
        let p = place(&code, ADDR, 0);
        check(&p, 0, S, "endbr64");
        assert_eq!(p.reason, "size unknown");
        let p = place(&code, ADDR, 64);
        check(&p, 0, S, "endbr64");
        assert_eq!(p.reason, "only 7 of 64 bytes readable");
        check(&place(&[], ADDR, 0), 0, S, "(undecodable)");
        // Bytes past the symbol size are ignored.
        check(&place(&code, ADDR, 6), 4, E, "push rbp");
        // The size cuts the call in half.
        let p = at(&[ENDBR, &[0xe8, 0, 0, 0]]);
        assert_eq!(p.reason, "undecodable instruction at +0x4");
        // 0x06 is invalid in 64-bit mode.
        let p = at(&[ENDBR, &[0x55, 0x06, 0xc3]]);
        assert_eq!(p.reason, "undecodable instruction at +0x5");
        check(&at(&[&[0x06]]), 0, S, "(undecodable)");
    }

    #[test]
    fn kernel_treatment_table() {
        use Kernel::{Emulated as Em, Refused as No, SingleStepped as Ss};
        #[rustfmt::skip]
        let cases: &[(&[u8], Kernel)] = &[
            (&[0x55], Em), (&[0x41, 0x57], Em), (&[0xe8, 0, 0, 0, 0], Em),
            (&[0xe9, 0, 0, 0, 0], Em), (&[0xeb, 0], Em), (&[0x74, 0], Em),
            (&[0x0f, 0x84, 0, 0, 0, 0], Em), (&[0xf2, 0xe9, 0, 0, 0, 0], Em), // bnd jmp
            (&[0x90], Em), (&[0x66, 0x90], Em), (&[0x0f, 0x1f, 0x00], Em),
            (&[0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], Em),
            (&[0xf3, 0x90], Ss), (&[0x41, 0x90], Ss), // pause, xchg r8d, eax
            (&[0x0f, 0x1f, 0x41, 0x00], Ss), (ENDBR, Ss), (&[0xff, 0xd0], Ss), (&[0xc3], Ss),
            (&[0x66, 0xe8, 0, 0], No), (&[0x2e, 0x74, 0], No), (&[0x3e, 0xff, 0xe0], No),
            (&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], No), // cs nopw
            (&[0xf0, 0x48, 0x0f, 0xb1, 0x0a], No), // lock cmpxchg
        ];
        for (bytes, want) in cases {
            assert_eq!(kernel_treatment(bytes), *want, "{bytes:02x?}");
        }
        let p = at(&[&[0x2e, 0x74, 0x00]]);
        assert!(
            p.reason
                .ends_with("refuses to probe this instruction (prefix)"),
            "{p:?}"
        );
    }

    /// Placements on real compiler output, built at test time.
    #[test]
    fn gcc_output() {
        use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
        const SRC: &str = "extern int ext(int);\nint (*fp)(int);\n\
            int leaf_add(int x) { return x + 1; }\n\
            int tail_plain(int x) { return ext(x); }\n\
            int with_saved(int x) { int a = ext(x); int b = ext(a); return a + b; }\n\
            int via_ptr(int x) { int y = ext(x); return fp(y + x); }\n\
            int dispatch(int x, int z) { switch (ext(x)) {\n\
              case 0: return ext(z); case 1: return z * 3; case 2: return ext(z + 1);\n\
              case 3: return z - 7; case 4: return ext(z * 5); case 5: return z ^ 9;\n\
              default: return 0; } }\n";
        let dir = std::env::temp_dir().join(format!("placement-gcc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, obj) = (dir.join("t.c"), dir.join("t.o"));
        std::fs::write(&src, SRC).unwrap();
        // Compiles with `flags`; returns a lookup of placements by function name.
        type Lookup = Box<dyn Fn(&str) -> Placement>;
        let build = |flags: &str| -> Option<Lookup> {
            let mut gcc = std::process::Command::new("gcc");
            gcc.args(flags.split(' '))
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&obj);
            assert!(gcc.status().ok()?.success(), "gcc {flags} failed");
            let data = std::fs::read(&obj).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let mut out = Vec::new();
            for sym in file.symbols().filter(|s| s.kind() == SymbolKind::Text) {
                let sec = file.section_by_index(sym.section_index().unwrap()).unwrap();
                let code = &sec.data().unwrap()[(sym.address() - sec.address()) as usize..];
                let name = sym.name().unwrap().to_owned();
                out.push((name, place(code, sym.address(), sym.size())));
            }
            Some(Box::new(move |name| {
                let found = out.iter().find(|(n, _)| n == name);
                found
                    .unwrap_or_else(|| panic!("{name} in {out:?}"))
                    .1
                    .clone()
            }))
        };
        let Some(o2) = build("-O2 -fcf-protection=full") else {
            eprintln!("gcc not available; skipping");
            return;
        };
        check(&o2("leaf_add"), 0, S, "endbr64");
        let p = o2("tail_plain");
        assert!(
            (p.offset, p.class) == (4, E) && p.instruction.starts_with("jmp"),
            "{p:?}"
        );
        check(&o2("with_saved"), 4, E, "push rbx");
        // Ends in a tracked `jmp [rip+fp]`.
        check(&o2("via_ptr"), 4, E, "push rbx");
        // Ends in a `notrack jmp rax` through a jump table.
        let p = o2("dispatch");
        assert!(
            p.offset == 0 && p.reason.starts_with("indirect jump"),
            "{p:?}"
        );

        let o0 = build("-O0 -fcf-protection=full").unwrap();
        for name in ["leaf_add", "tail_plain", "with_saved", "via_ptr"] {
            check(&o0(name), 4, E, "push rbp");
        }
        assert_eq!(o0("dispatch").offset, 0);

        let fp = build("-O2 -fno-omit-frame-pointer -fcf-protection=full").unwrap();
        check(&fp("with_saved"), 4, E, "push rbp");

        let plain = build("-O2 -fcf-protection=none").unwrap();
        check(&plain("with_saved"), 0, E, "push rbx");
        check(&plain("leaf_add"), 0, S, "lea eax, [rdi+1]");

        let patch = build("-O2 -fcf-protection=full -fpatchable-function-entry=3").unwrap();
        check(&patch("leaf_add"), 4, E, "nop");
        check(&patch("with_saved"), 7, E, "push rbx");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn release_probe_skips_the_null_check_onto_a_push() {
        const ADDR: u64 = 0x1000;
        // test rdi, rdi; je +0x10; push rbp; push rbx; mov rdi, rbx; pop rbx; pop rbp; ret
        let glibc_like = [
            0x48, 0x85, 0xff, 0x74, 0x08, 0x55, 0x53, 0x48, 0x89, 0xdf, 0x5b, 0x5d, 0xc3, 0xc3,
        ];
        let size = glibc_like.len() as u64;
        let p = past_null_check(&glibc_like, ADDR, size).expect("moved");
        assert_eq!((p.offset, p.class), (5, CostClass::Emulated), "{p:?}");
        assert_eq!(p.instruction, "push rbp");
        // With endbr64 in front.
        let cet = [&[0xf3, 0x0f, 0x1e, 0xfa][..], &glibc_like].concat();
        let p = past_null_check(&cet, ADDR, cet.len() as u64).expect("moved");
        assert_eq!(p.offset, 9);
        // A loop back to the instruction after the check would be counted as a call: stay.
        let mut looping = glibc_like;
        looping[12] = 0xeb; // jmp -> +5
        looping[13] = (5i8 - 14) as u8;
        assert!(past_null_check(&looping, ADDR, size).is_none());
        // An indirect jump: targets unknown.
        let mut indirect = glibc_like.to_vec();
        indirect.splice(12..13, [0xff, 0xe0]); // jmp rax
        assert!(past_null_check(&indirect, ADDR, indirect.len() as u64).is_none());
        // Another register, or no check at all.
        let mut rsi = glibc_like;
        rsi[2] = 0xf6; // test rsi, rsi
        assert!(past_null_check(&rsi, ADDR, size).is_none());
        assert!(past_null_check(&glibc_like[5..], ADDR, size - 5).is_none());
    }
}
