//! Which instructions the kernel refuses to put a uprobe on (x86-64), so that placement can move
//! the probe past one, or skip the function with the reason, instead of failing the attach.
//!
//! Mirrors the analysis `arch_uprobe_analyze_insn` in arch/x86/kernel/uprobes.c runs when the
//! breakpoint is installed (checked against Linux 6.18; the attach then fails with ENOTSUPP,
//! errno 524, "Unknown error 524"):
//! - `is_prefix_bad`: a legacy ES, CS, SS or DS segment prefix (0x26, 0x2e, 0x36, 0x3e) or a LOCK
//!   prefix (0xf0) anywhere among the instruction's prefixes. FS and GS (0x64, 0x65) are fine.
//! - `insn_masking_exception`: `mov ss, r/m` (0x8e with ModRM.reg = 2) and `pop ss` (0x17).
//! - the good-opcode bitmap for 64-bit code, indexed by the first opcode byte: for VEX (0xc4,
//!   0xc5) and EVEX (0x62) encodings the kernel's decoder keeps the prefix apart and the first
//!   opcode byte is the one after it, whatever the opcode map. The 0x0f escape is marked good, so
//!   every two- and three-byte opcode passes (`syscall` and `ud2` included); the kernel's table
//!   of good two-byte opcodes is only consulted for a first byte that is not good, which never
//!   holds an escape in 64-bit code. It is kept below to say so.
//! - `branch_setup_xol_ops`: a relative call, jmp or jcc with an operand-size prefix (0x66).
//!
//! Not modeled: instructions the kernel's decoder itself rejects (ENOEXEC, errno 8; iced-x86
//! rejects those too, or decodes them where the kernel does not, e.g. some malformed EVEX), and
//! APX's REX2 prefix (0xd5), which iced-x86 does not decode here. The attach of such a probe
//! fails and the function is reported skipped with the kernel's error.

use std::fmt;

/// Why the kernel refuses a probe on an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A LOCK or ES/CS/SS/DS segment prefix (the byte).
    Prefix(u8),
    /// `mov ss` or `pop ss`: they hold off interrupts and traps for one instruction.
    MasksExceptions,
    /// A (first) opcode byte outside the kernel's good-opcode table.
    Opcode(u8),
    /// The opcode byte of a VEX or EVEX encoded instruction, outside the same table.
    VexOpcode(u8),
    /// A relative call, jmp or jcc with a 16-bit operand-size prefix.
    Branch16,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Prefix(p) => {
                let name = match p {
                    0xf0 => "lock",
                    0x26 => "es segment",
                    0x2e => "cs segment",
                    0x36 => "ss segment",
                    _ => "ds segment (or notrack)",
                };
                write!(f, "{name} prefix {p:#04x}")
            }
            Refusal::MasksExceptions => write!(f, "writes ss, which masks exceptions"),
            Refusal::Opcode(op) => write!(f, "opcode {op:#04x} not in its table of good opcodes"),
            Refusal::VexOpcode(op) => write!(
                f,
                "VEX/EVEX opcode {op:#04x} not in its table of good opcodes"
            ),
            Refusal::Branch16 => write!(f, "branch with a 16-bit operand-size prefix"),
        }
    }
}

/// Builds a 256-bit opcode bitmap from 16 rows of 16 flags (row `r`, column `c` = opcode
/// `r * 16 + c`), as the kernel's tables are written.
const fn bitmap(rows: [u16; 16]) -> [u64; 4] {
    let mut bits = [0u64; 4];
    let mut row = 0;
    while row < 16 {
        let mut col = 0;
        while col < 16 {
            // Column 0 is the most significant bit of the row as written below.
            if rows[row] & (1 << (15 - col)) != 0 {
                let op = row * 16 + col;
                bits[op / 64] |= 1 << (op % 64);
            }
            col += 1;
        }
        row += 1;
    }
    bits
}

fn has(table: &[u64; 4], op: u8) -> bool {
    table[usize::from(op) / 64] & (1 << (op % 64)) != 0
}

/// One-byte opcodes the kernel accepts in 64-bit code (its `good_insns_64`). Refused: the
/// opcodes invalid in 64-bit mode (06 07 0e 16 17 1e 1f 27 2f 37 3f 60 61 62 82 9a ce d4 d5 d6
/// ea), in/out/ins/outs (6c-6f e4-e7 ec-ef), int3, int n, int1, iret, hlt, cli, sti (cc cd f1 cf
/// f4 fa fb).
#[rustfmt::skip]
const GOOD_64: [u64; 4] = bitmap([
    //  0123456789abcdef
    0b1111_1100_1111_1101, // 0x
    0b1111_1100_1111_1100, // 1x
    0b1111_1110_1111_1110, // 2x
    0b1111_1110_1111_1110, // 3x
    0b1111_1111_1111_1111, // 4x
    0b1111_1111_1111_1111, // 5x
    0b0001_1111_1111_0000, // 6x
    0b1111_1111_1111_1111, // 7x
    0b1101_1111_1111_1111, // 8x
    0b1111_1111_1101_1111, // 9x
    0b1111_1111_1111_1111, // ax
    0b1111_1111_1111_1111, // bx
    0b1111_1111_1111_0000, // cx
    0b1111_0001_1111_1111, // dx
    0b1111_0000_1101_0000, // ex
    0b1011_0111_1100_1111, // fx
]);

/// Second bytes of 0x0f opcodes the kernel lists as good (its `good_2byte_insns`). Refused:
/// 0f 00, 01 (system groups), 05 (syscall), 06-09, 0b (ud2), 30 (wrmsr), 34, 35, 37, 78, 79,
/// ae (group 15). Only read when the first byte is not good: never for 0x0f in 64-bit code.
#[rustfmt::skip]
const GOOD_2BYTE: [u64; 4] = bitmap([
    //  0123456789abcdef
    0b0011_1000_0010_1111, // 0x
    0b1111_1111_1111_1111, // 1x
    0b1111_1111_1111_1111, // 2x
    0b0111_0010_1111_1111, // 3x
    0b1111_1111_1111_1111, // 4x
    0b1111_1111_1111_1111, // 5x
    0b1111_1111_1111_1111, // 6x
    0b1111_1111_0011_1111, // 7x
    0b1111_1111_1111_1111, // 8x
    0b1111_1111_1111_1111, // 9x
    0b1111_1111_1111_1101, // ax
    0b1111_1111_1111_1111, // bx
    0b1111_1111_1111_1111, // cx
    0b1111_1111_1111_1111, // dx
    0b1111_1111_1111_1111, // ex
    0b1111_1111_1111_1111, // fx
]);

/// The legacy prefixes the kernel's decoder collects (LOCK, REP, segments, sizes).
fn is_legacy_prefix(b: u8) -> bool {
    matches!(
        b,
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
    )
}

/// Why the kernel would refuse a uprobe on the instruction `insn` (its bytes, exactly), or
/// None when it accepts one.
pub(crate) fn refusal(insn: &[u8]) -> Option<Refusal> {
    let n = insn.iter().take_while(|b| is_legacy_prefix(**b)).count();
    let (legacy, rest) = insn.split_at(n);
    if let Some(&p) = legacy
        .iter()
        .find(|p| matches!(p, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0))
    {
        return Some(Refusal::Prefix(p));
    }
    // VEX (c4: 3 bytes, c5: 2 bytes) and EVEX (62: 4 bytes) in 64-bit code: the opcode byte
    // after the prefix is checked against the one-byte table.
    let vex_len = match rest.first() {
        Some(0xc4) => Some(3),
        Some(0xc5) => Some(2),
        Some(0x62) => Some(4),
        _ => None,
    };
    if let Some(len) = vex_len {
        let op = *rest.get(len)?;
        return (!has(&GOOD_64, op)).then_some(Refusal::VexOpcode(op));
    }
    let rest = match rest.first() {
        Some(0x40..=0x4f) => &rest[1..],
        _ => rest,
    };
    let (&op1, after) = rest.split_first()?;
    // mov ss, r/m (8e /2) and pop ss (17, also outside the table).
    if op1 == 0x17 || (op1 == 0x8e && after.first().is_some_and(|m| (m >> 3) & 7 == 2)) {
        return Some(Refusal::MasksExceptions);
    }
    let branch = matches!(op1, 0xe8 | 0xe9 | 0xeb | 0x70..=0x7f)
        || (op1 == 0x0f && after.first().is_some_and(|b| (0x80..=0x8f).contains(b)));
    if branch && legacy.contains(&0x66) {
        return Some(Refusal::Branch16);
    }
    if has(&GOOD_64, op1) {
        return None;
    }
    // A two-byte opcode (0x0f, then neither 0x38 nor 0x3a) whose second byte is good: the
    // kernel's fallback, unreachable while 0x0f is in the one-byte table.
    let two_byte = op1 == 0x0f && after.first().is_some_and(|b| !matches!(b, 0x38 | 0x3a));
    if two_byte && after.first().is_some_and(|b| has(&GOOD_2BYTE, *b)) {
        return None;
    }
    Some(Refusal::Opcode(op1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one-byte opcode the kernel refuses in 64-bit code, from its table's comments.
    const REFUSED_64: [u8; 36] = [
        0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x6c,
        0x6d, 0x6e, 0x6f, 0x82, 0x9a, 0xcc, 0xcd, 0xce, 0xcf, 0xd4, 0xd5, 0xd6, 0xe4, 0xe5, 0xe6,
        0xe7, 0xea, 0xec, 0xed, 0xee, 0xef,
    ];

    #[test]
    fn one_byte_table_refuses_exactly_the_listed_opcodes() {
        let extra = [0xf1, 0xf4, 0xfa, 0xfb];
        for op in 0..=255u8 {
            let refused = REFUSED_64.contains(&op) || extra.contains(&op);
            assert_eq!(!has(&GOOD_64, op), refused, "opcode {op:#04x}");
        }
    }

    #[test]
    fn two_byte_table_refuses_exactly_the_listed_opcodes() {
        let listed = [
            0x00, 0x01, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x30, 0x34, 0x35, 0x37, 0x78, 0x79,
            0xae,
        ];
        for op in 0..=255u8 {
            assert_eq!(!has(&GOOD_2BYTE, op), listed.contains(&op), "{op:#04x}");
        }
    }

    /// Representative encodings; each was also probed on Linux 6.18, which accepted or refused
    /// it as listed here.
    #[test]
    fn representative_encodings() {
        use Refusal::*;
        #[rustfmt::skip]
        let cases: &[(&[u8], Option<Refusal>)] = &[
            (&[0xf0, 0xff, 0x0f], Some(Prefix(0xf0))),             // lock decl [rdi]
            (&[0xf0, 0x0f, 0xb1, 0x0f], Some(Prefix(0xf0))),       // lock cmpxchg [rdi], ecx
            (&[0x2e, 0x74, 0x00], Some(Prefix(0x2e))),             // cs je (branch hint)
            (&[0x3e, 0xff, 0xe0], Some(Prefix(0x3e))),             // notrack jmp rax
            (&[0x26, 0x74, 0x00], Some(Prefix(0x26))),
            (&[0x36, 0x74, 0x00], Some(Prefix(0x36))),
            (&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], Some(Prefix(0x2e))), // cs nopw
            (&[0x64, 0x74, 0x00], None),                           // fs: is fine
            (&[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], None), // mov rax, fs:[0x28]
            (&[0x55], None),                                       // push rbp
            (&[0x41, 0x57], None),                                 // push r15
            (&[0xf3, 0x0f, 0x1e, 0xfa], None),                     // endbr64
            (&[0xcc], Some(Opcode(0xcc))),                         // int3
            (&[0xcd, 0x80], Some(Opcode(0xcd))),                   // int 0x80
            (&[0xcf], Some(Opcode(0xcf))),                         // iret
            (&[0xe4, 0x00], Some(Opcode(0xe4))),                   // in al, 0
            (&[0x0f, 0x05], None),                                 // syscall: 0x0f is good
            (&[0x0f, 0x0b], None),                                 // ud2
            (&[0x0f, 0x01, 0xd0], None),                           // xgetbv
            (&[0x0f, 0xae, 0x07], None),                           // fxsave [rdi]
            (&[0x66, 0x0f, 0x38, 0x00, 0xc1], None),               // pshufb
            (&[0x66, 0x0f, 0x3a, 0x0f, 0xc1, 0x08], None),         // palignr
            (&[0x8e, 0xd0], Some(MasksExceptions)),                // mov ss, eax
            (&[0x8e, 0x10], Some(MasksExceptions)),                // mov ss, [rax]
            (&[0x8e, 0xc0], None),                                 // mov es, eax
            (&[0x17], Some(MasksExceptions)),                      // pop ss
            (&[0xc5, 0xfe, 0x6f, 0x07], Some(VexOpcode(0x6f))),    // vmovdqu ymm0, [rdi]
            (&[0xc5, 0xfe, 0x7f, 0x07], None),                     // vmovdqu [rdi], ymm0
            (&[0xc5, 0xf8, 0x77], None),                           // vzeroupper
            (&[0xc4, 0xe2, 0x7d, 0x00, 0xc1], None),               // vpshufb
            (&[0x62, 0xf1, 0x7d, 0x48, 0x6f, 0x07], Some(VexOpcode(0x6f))), // vmovdqa32 zmm0, [rdi]
            (&[0x62, 0xf1, 0x7d, 0x48, 0x7f, 0x07], None),         // vmovdqa32 [rdi], zmm0
            (&[0x66, 0xe8, 0, 0], Some(Branch16)),                 // call rel16
            (&[0x66, 0xe9, 0, 0], Some(Branch16)),
            (&[0x66, 0xeb, 0], Some(Branch16)),
            (&[0x66, 0x74, 0], Some(Branch16)),
            (&[0x66, 0x0f, 0x84, 0, 0], Some(Branch16)),
            (&[0xe8, 0, 0, 0, 0], None),
            (&[0xf2, 0xe9, 0, 0, 0, 0], None),                     // bnd jmp
            (&[0x66, 0x0f, 0xe8, 0xc1], None),                     // psubsb: 0x66 on a non-branch
            (&[0x9d], None),                                       // popf
        ];
        for (bytes, want) in cases {
            assert_eq!(refusal(bytes), *want, "{bytes:02x?}");
        }
    }

    #[test]
    fn reasons_read_well() {
        let lock = refusal(&[0xf0, 0xff, 0x0f]).unwrap();
        assert_eq!(lock.to_string(), "lock prefix 0xf0");
        let vex = refusal(&[0xc5, 0xfe, 0x6f, 0x07]).unwrap();
        assert_eq!(
            vex.to_string(),
            "VEX/EVEX opcode 0x6f not in its table of good opcodes"
        );
    }
}
