//! Unit tests of placement: synthetic encodings and real gcc output.

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
    use Kernel::{Emulated as Em, SingleStepped as Ss};
    #[rustfmt::skip]
    let cases: &[(&[u8], Kernel)] = &[
        (&[0x55], Em), (&[0x41, 0x57], Em), (&[0xe8, 0, 0, 0, 0], Em),
        (&[0xe9, 0, 0, 0, 0], Em), (&[0xeb, 0], Em), (&[0x74, 0], Em),
        (&[0x0f, 0x84, 0, 0, 0, 0], Em), (&[0xf2, 0xe9, 0, 0, 0, 0], Em), // bnd jmp
        (&[0x90], Em), (&[0x66, 0x90], Em), (&[0x0f, 0x1f, 0x00], Em),
        (&[0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], Em),
        (&[0xf3, 0x90], Ss), (&[0x41, 0x90], Ss), // pause, xchg r8d, eax
        (&[0x0f, 0x1f, 0x41, 0x00], Ss), (ENDBR, Ss), (&[0xff, 0xd0], Ss), (&[0xc3], Ss),
        (&[0x0f, 0x05], Ss), // syscall
    ];
    for (bytes, want) in cases {
        assert_eq!(kernel_treatment(bytes), *want, "{bytes:02x?}");
    }
    let refused: &[&[u8]] = &[
        &[0x66, 0xe8, 0, 0],
        &[0x2e, 0x74, 0],
        &[0x3e, 0xff, 0xe0],
        &[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], // cs nopw
        &[0xf0, 0x48, 0x0f, 0xb1, 0x0a],                // lock cmpxchg
        &[0xcc],
    ];
    for bytes in refused {
        let got = kernel_treatment(bytes);
        assert!(matches!(got, Kernel::Refused(_)), "{bytes:02x?}: {got:?}");
    }
    // A refused branch first: nothing to move past.
    let p = at(&[&[0x2e, 0x74, 0x00]]);
    let why = "the kernel refuses to probe hint-not-taken je short 0x401003 (cs segment prefix \
               0x2e); the probe cannot move past it: it branches or moves the stack pointer";
    assert_eq!(p.refused.as_deref(), Some(why), "{p:?}");
    assert_eq!(p.reason, why);
}

/// glibc's `pthread_spin_lock` (x86-64 assembly): `lock decl (%rdi)` first.
const SPIN_LOCK: [u8; 25] = [
    0xf0, 0xff, 0x0f, // +0 lock decl [rdi]
    0x75, 0x0b, // +3 jne +0x10
    0x31, 0xc0, // +5 xor eax, eax
    0xc3, // +7 ret
    0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0, // +8 nopl
    0xf3, 0x90, // +0x10 pause
    0x83, 0x3f, 0x00, // +0x12 cmp dword [rdi], 0
    0x7f, 0xe9, // +0x15 jg +0 (back to the symbol: counted either way)
    0xeb, 0xf7, // +0x17 jmp +0x10
];

#[test]
fn refused_first_instruction_is_passed_when_nothing_branches_past_it() {
    let p = at(&[&SPIN_LOCK]);
    check(&p, 3, E, "jne short 0x401010");
    assert_eq!(p.refused, None);
    assert_eq!(
        p.reason,
        "moved past lock dec dword ptr [rdi], which the kernel refuses to probe (lock prefix \
         0xf0); jne short 0x401010 is emulated"
    );
    // lock decl; lock incl [rsi]; ret: both passed, onto a single-stepped ret.
    let p = at(&[&[0xf0, 0xff, 0x0f, 0xf0, 0xff, 0x06, 0xc3]]);
    check(&p, 6, S, "ret");
    assert!(
        p.reason.starts_with(
            "moved past lock dec dword ptr [rdi], lock inc dword ptr [rsi] (lock prefix 0xf0)"
        ),
        "{p:?}"
    );
}

#[test]
fn refused_first_instruction_that_cannot_be_passed_makes_the_function_unprobeable() {
    let refused = |p: &Placement| p.refused.clone().unwrap_or_default();
    // A loop back to the instruction after the lock: the moved probe would count iterations.
    let mut looping = SPIN_LOCK;
    looping[22] = (3i8 - 0x17) as u8; // jg +3
    let p = at(&[&looping]);
    assert_eq!(p.offset, 0);
    assert!(
        refused(&p).starts_with("the kernel refuses to probe lock dec dword ptr [rdi] (lock prefix 0xf0); the probe cannot move past it: branch at +0x15 targets +0x3"),
        "{p:?}"
    );
    // lock xadd [rdi], rsp writes the stack pointer.
    let p = at(&[&[0xf0, 0x48, 0x0f, 0xc1, 0x27, 0xc3]]);
    assert!(refused(&p).contains("moves the stack pointer"), "{p:?}");
    // Only refused instructions.
    let p = at(&[&[0xf0, 0xff, 0x0f, 0xf0, 0xff, 0x0f]]);
    assert!(
        refused(&p).ends_with("so are the instructions after it"),
        "{p:?}"
    );
    // The size unknown: what follows cannot be read.
    let p = place(&SPIN_LOCK, ADDR, 0);
    assert_eq!(
        refused(&p),
        "the kernel refuses to probe lock dec dword ptr [rdi] (lock prefix 0xf0); the probe \
         cannot move past it: size unknown"
    );
    // Probeable functions have no refusal.
    assert_eq!(at(&[ENDBR, &[0x55, 0x5d, 0xc3]]).refused, None);
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

#[test]
fn first_argument_probe_skips_leading_code_onto_a_jcc() {
    const ADDR: u64 = 0x1000;
    // glibc 2.36's pthread_mutex_lock: mov eax, [rdi+0x10]; mov edx, eax; and edx, 0x17f;
    // and eax, 0x7c; jne +4; ret; ret; ret; ret
    let glibc = [
        0x8b, 0x47, 0x10, 0x89, 0xc2, 0x81, 0xe2, 0x7f, 0x01, 0x00, 0x00, 0x83, 0xe0, 0x7c, 0x0f,
        0x85, 0x04, 0x00, 0x00, 0x00, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3,
    ];
    let size = glibc.len() as u64;
    assert_eq!(place(&glibc, ADDR, size).class, CostClass::SingleStepped);
    let p = past_leading_code(&glibc, ADDR, size).expect("moved");
    assert_eq!((p.offset, p.class), (14, CostClass::Emulated), "{p:?}");
    assert_eq!(p.instruction, "jne 0x1018");
    // The first argument overwritten before the jcc: its value at the probe would be wrong.
    let mut clobbers = glibc;
    clobbers[3..5].copy_from_slice(&[0x89, 0xc7]); // mov edi, eax
    assert!(past_leading_code(&clobbers, ADDR, size).is_none());
    // A branch back into the skipped code would count a call twice.
    let mut looping = glibc;
    looping[20..22].copy_from_slice(&[0xeb, (3i8 - 22) as u8]); // jmp -> +3
    assert!(past_leading_code(&looping, ADDR, size).is_none());
    // A push of the stack before it: the return address is no longer on top.
    let mut sub_rsp = glibc;
    sub_rsp[5..11].copy_from_slice(&[0x48, 0x83, 0xec, 0x08, 0x90, 0x90]); // sub rsp, 8; nop; nop
    assert!(past_leading_code(&sub_rsp, ADDR, size).is_none());
}
