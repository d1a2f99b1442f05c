use std::path::PathBuf;

use gimli::{EhFrameHdr, UnwindContext};
use object::ObjectSection;

use super::*;
use crate::families::cpu::testing::{gcc, symbol};

/// The libc this test binary runs on, and its mapping of code.
fn libc() -> (PathBuf, Region) {
    let pid = std::process::id() as i32;
    let region = code_regions(pid)
        .unwrap()
        .into_iter()
        .find(|r| r.path.contains("/libc.so.6"))
        .expect("libc.so.6 is mapped");
    (PathBuf::from(&region.path), region)
}

/// Checks what every table must be: rows sorted, no two alike in a row, a NONE row last, and
/// stats that count them.
#[track_caller]
fn check_shape(table: &ObjectTable) {
    let rows = &table.rows;
    assert!(rows.windows(2).all(|w| w[0].pc < w[1].pc), "unsorted");
    let alike = rows
        .windows(2)
        .find(|w| UnwindRow { pc: 0, ..w[0] } == UnwindRow { pc: 0, ..w[1] });
    assert_eq!(alike, None, "alike rows not merged");
    assert_eq!(rows.last().map(|r| r.cfa), Some(cfa::NONE));
    assert_eq!(rows[0].pc, 0, "the base is the first row's start");
    assert_eq!(table.stats, TableStats::of(rows, table.stats.fdes));
}

#[test]
fn libc_has_signal_and_outermost_rows() {
    let (path, region) = libc();
    let table = compile(&fs::read(&path).unwrap()).unwrap();
    check_shape(&table);
    let s = table.stats;
    assert!(s.fdes > 1000 && s.rows > s.fdes, "{s:?}");
    assert!(s.unsupported < s.rows / 20, "{s:?}");

    // The kernel returns from a handler to the restorer glibc installs with every action
    // (`__restore_rt`, not exported): setting SIGWINCH's action to what it is makes the kernel
    // hold it, and reading the action back gives its address in this process.
    // SAFETY: sigaction reads and writes the two zeroed structs given; the action put back is
    // the one read, so nothing changes for the process.
    let restorer = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGWINCH, std::ptr::null(), &mut action),
            0
        );
        assert_eq!(
            libc::sigaction(libc::SIGWINCH, &action, std::ptr::null_mut()),
            0
        );
        assert_eq!(
            libc::sigaction(libc::SIGWINCH, std::ptr::null(), &mut action),
            0
        );
        action.sa_restorer.expect("glibc sets a restorer") as usize as u64
    };
    assert!((region.start..region.end).contains(&restorer));
    let base = table
        .mapping_base(region.start, region.file_offset)
        .unwrap();
    // The handler's return address is the restorer; the walk looks it up one byte back.
    for at in [restorer, restorer - 1] {
        let row = row_for(&table.rows, at - base).unwrap();
        assert_eq!(row.cfa, cfa::SIGNAL, "{at:#x}: {row:?}");
    }

    // A new thread's first frame (in clone) has no return address.
    let (clone, size) = symbol(&path, "clone");
    let (from, to) = (clone - table.base, clone + size - table.base);
    let outermost = table
        .rows
        .iter()
        .filter(|r| (from..to).contains(&u64::from(r.pc)))
        .filter(|r| r.cfa == cfa::END)
        .count();
    assert_eq!(outermost, 1, "{:?}", table.rows);
}

/// The rules gimli gives at a few addresses of every function of libc, looked up through
/// `.eh_frame_hdr` (not the walk over all FDEs the compiler does), match the rows.
#[test]
fn libc_rows_agree_with_gimli_at_each_function() {
    let (path, _) = libc();
    let data = fs::read(&path).unwrap();
    let table = compile(&data).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let section = |name| file.section_by_name(name).unwrap();
    let (eh, hdr) = (section(".eh_frame"), section(".eh_frame_hdr"));
    let bases = BaseAddresses::default()
        .set_eh_frame(eh.address())
        .set_eh_frame_hdr(hdr.address());
    let eh_frame = EhFrame::new(eh.data().unwrap(), LittleEndian);
    let hdr = EhFrameHdr::new(hdr.data().unwrap(), LittleEndian)
        .parse(&bases, 8)
        .unwrap();
    let lookup = hdr.table().unwrap();
    let mut ctx = UnwindContext::new();
    let (mut compared, mut checked) = (0, 0);
    for entry in lookup.iter(&bases) {
        let start = entry.unwrap().0.direct().unwrap();
        let fde = lookup
            .fde_for_address(&eh_frame, &bases, start, EhFrame::cie_from_offset)
            .unwrap();
        let len = fde.len();
        for pc in [start, start + len / 3, start + len / 2, start + len - 1] {
            let want = fde
                .unwind_info_for_address(&eh_frame, &bases, &mut ctx, pc)
                .unwrap();
            let row = table.row_at(pc).unwrap();
            checked += 1;
            let ra = want.register(RIP);
            if fde.is_signal_trampoline() {
                assert_eq!(row.cfa, cfa::SIGNAL, "{pc:#x}");
                continue;
            }
            if ra == Some(RegisterRule::Undefined) {
                assert_eq!(row.cfa, cfa::END, "{pc:#x}");
                continue;
            }
            let CfaRule::RegisterAndOffset { register, offset } = *want.cfa() else {
                assert!(matches!(row.cfa, cfa::PLT | cfa::UNSUPPORTED), "{pc:#x}");
                continue;
            };
            let kind = match register {
                RSP => cfa::RSP,
                RBP => cfa::RBP,
                _ => cfa::UNSUPPORTED,
            };
            if ra != Some(RegisterRule::Offset(-8)) || kind == cfa::UNSUPPORTED {
                assert_eq!(row.cfa, cfa::UNSUPPORTED, "{pc:#x}");
                continue;
            }
            assert_eq!(
                (row.cfa, i64::from(row.cfa_offset)),
                (kind, offset),
                "{pc:#x}"
            );
            match want.register(RBP) {
                None | Some(RegisterRule::SameValue) => assert_eq!(row.rbp, RBP_UNCHANGED),
                Some(RegisterRule::Offset(n)) => assert_eq!(i64::from(row.rbp) * 8, n),
                Some(other) => panic!("{pc:#x}: rbp {other:?}"),
            }
            compared += 1;
        }
    }
    assert!(
        compared > 5000 && compared * 10 > checked * 9,
        "{compared} of {checked}"
    );
}

#[test]
fn plt_sections_get_plt_rows() {
    const MAIN: &str = "#include <stdio.h>\nint main(void) { return puts(\"x\") < 0; }\n";
    let built = gcc("plt", &[("plt.c", MAIN)], &["-O2", "-Wl,-z,lazy"]);
    let python = PathBuf::from("/usr/bin/python3");
    for path in built.into_iter().chain(python.exists().then_some(python)) {
        let data = fs::read(&path).unwrap();
        let table = compile(&data).unwrap();
        check_shape(&table);
        let file = object::File::parse(&*data).unwrap();
        let plt = file.section_by_name(".plt").unwrap().address();
        let at = |offset: u64| *table.row_at(plt + offset).unwrap();
        let rsp = |cfa_offset| UnwindRow {
            pc: 0,
            cfa_offset,
            cfa: cfa::RSP,
            rbp: RBP_UNCHANGED,
        };
        let what = path.display();
        // PLT0 pushes the link map (CFA rsp + 16, then + 24); an entry's `push` (at 6) moves
        // the CFA from byte 11 on, the expression's threshold.
        assert_eq!(UnwindRow { pc: 0, ..at(0) }, rsp(16), "{what}");
        assert_eq!(UnwindRow { pc: 0, ..at(6) }, rsp(24), "{what}");
        let entry = at(16);
        assert_eq!(
            (entry.cfa, entry.cfa_offset, entry.rbp),
            (cfa::PLT, 8, 11),
            "{what}"
        );
        assert!(table.stats.plt >= 1, "{what}");
    }
}

/// Every rule the rows keep, and the ones they do not, written by hand: `rules` in
/// `.eh_frame`, `dbg` only in `.debug_frame`, and a `__restore_rt` with no FDE.
const RULES: &str = "
    .text
    .globl rules
rules:
    .cfi_startproc
    nop
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
rules_pushed:
    mov %rsp, %rbp
    .cfi_def_cfa_register %rbp
rules_framed:
    nop
    .cfi_def_cfa_offset 70000
rules_big:
    nop
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -2048
rules_far_rbp:
    nop
    .cfi_register %rbp, %rbx
rules_rbp_in_rbx:
    nop
    .cfi_same_value %rbp
rules_same:
    nop
    .cfi_def_cfa %r10, 8
rules_r10:
    nop
    .cfi_def_cfa %rsp, 8
    .cfi_offset %rip, -16
rules_ra:
    nop
    .cfi_offset %rip, -8
    .cfi_escape 0x0f, 0x03, 0x77, 0x08, 0x06
rules_expr:
    nop
    .cfi_escape 0x0f, 0x0b, 0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22
rules_plt:
    nop
    .cfi_def_cfa %rsp, 8
    .cfi_undefined %rip
rules_end:
    nop
    .cfi_offset %rip, -8
rules_back:
    nop
    .cfi_def_cfa_offset 8
rules_again:
    ret
    .cfi_endproc
rules_done:
    .globl next
next:
    .cfi_startproc
    ret
    .cfi_endproc
next_done:
    .skip 16, 0xcc
    .globl sig
sig:
    .cfi_startproc
    .cfi_signal_frame
    nop
    ret
    .cfi_endproc
sig_done:
    .skip 16, 0xcc
";

const DEBUG_ONLY: &str = "
    .cfi_sections .debug_frame
    .text
    .globl dbg
dbg:
    .cfi_startproc
    push %rbx
    .cfi_adjust_cfa_offset 8
dbg_pushed:
    pop %rbx
    .cfi_adjust_cfa_offset -8
    ret
    .cfi_endproc
dbg_done:
    .skip 16, 0xcc
    .globl __restore_rt
    .type __restore_rt, @function
__restore_rt:
    mov $15, %rax
    syscall
    .size __restore_rt, .-__restore_rt
restore_done:
    .skip 16, 0xcc
";

#[test]
fn each_rule_becomes_its_row() {
    let sources = [("rules.s", RULES), ("debug.s", DEBUG_ONLY)];
    let Some(path) = gcc("rules.so", &sources, &["-shared", "-nostdlib"]) else {
        return;
    };
    let table = compile(&fs::read(&path).unwrap()).unwrap();
    check_shape(&table);
    let at = |label: &str| symbol(&path, label).0;
    let row = |label: &str| {
        let r = *table.row_at(at(label)).unwrap();
        (r.cfa, r.cfa_offset, r.rbp)
    };
    let starts_row = |label: &str| {
        let pc = at(label) - table.base;
        table.rows.iter().any(|r| u64::from(r.pc) == pc)
    };
    use cfa::*;
    let unsupported = (UNSUPPORTED, 0, 0);
    for (label, want) in [
        ("rules", (RSP, 8, RBP_UNCHANGED)),
        ("rules_pushed", (RSP, 16, -2)),
        ("rules_framed", (RBP, 16, -2)),
        ("rules_big", unsupported),
        ("rules_far_rbp", (RBP, 16, RBP_LOST)),
        ("rules_rbp_in_rbx", (RBP, 16, RBP_LOST)),
        ("rules_same", (RBP, 16, RBP_UNCHANGED)),
        ("rules_r10", unsupported),
        ("rules_ra", unsupported),
        ("rules_expr", unsupported),
        ("rules_plt", (PLT, 8, 11)),
        ("rules_end", (END, 0, 0)),
        ("rules_back", (RSP, 8, RBP_UNCHANGED)),
        ("rules_again", (RSP, 8, RBP_UNCHANGED)),
        ("next", (RSP, 8, RBP_UNCHANGED)),
        ("next_done", (NONE, 0, 0)),
        ("sig", (SIGNAL, 0, 0)),
        ("sig_done", (NONE, 0, 0)),
        ("dbg", (RSP, 8, RBP_UNCHANGED)),
        ("dbg_pushed", (RSP, 16, RBP_UNCHANGED)),
        ("dbg_done", (NONE, 0, 0)),
        ("__restore_rt", (SIGNAL, 0, 0)),
        ("restore_done", (NONE, 0, 0)),
    ] {
        assert_eq!(row(label), want, "{label}: {:?}", table.rows);
    }
    // Alike rows are one, across functions that touch too.
    for label in ["rules_rbp_in_rbx", "rules_again", "rules_done", "next"] {
        assert!(!starts_row(label), "{label}: {:?}", table.rows);
    }
    // The handler's return address, looked up one byte back.
    assert_eq!(table.row_at(at("__restore_rt") - 1).unwrap().cfa, SIGNAL);
    let stats = TableStats {
        fdes: 4,
        rows: table.rows.len() as u32,
        unsupported: 2,
        plt: 1,
        signal: 2,
        end: 1,
    };
    assert_eq!(table.stats, stats, "{:?}", table.rows);
}

#[test]
fn the_vdso_compiles_from_its_image() {
    let pid = std::process::id() as i32;
    let Some((start, image)) = read_vdso(pid) else {
        eprintln!("skipped: no [vdso] mapped (vdso=0 on the kernel command line?)");
        return;
    };
    let table = compile(&image).unwrap();
    check_shape(&table);
    assert!(table.stats.fdes > 0);
    let vdso = code_regions(pid)
        .unwrap()
        .into_iter()
        .find(|r| r.path == VDSO)
        .unwrap();
    assert_eq!(vdso.start, start);
    let base = table.mapping_base(start, vdso.file_offset).unwrap();
    assert!((start..vdso.end).contains(&base));
    // The clock_gettime this process calls through the vDSO has a row.
    let file = object::File::parse(&*image).unwrap();
    let clock = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("__vdso_clock_gettime"))
        .unwrap();
    let row = table.row_at(clock.address()).unwrap();
    assert!(matches!(row.cfa, cfa::RSP | cfa::RBP), "{row:?}");
}

#[test]
fn mapping_bases_follow_the_segment_that_holds_the_offset() {
    // lld: the text segment's offset is not page-aligned and its vaddr is a page above it, so
    // its mapping starts below p_offset, in the page it shares with the read-only segment.
    let segments = [
        LoadSegment {
            file_offset: 0,
            file_size: 0x5a0,
            vaddr: 0,
            executable: false,
        },
        LoadSegment {
            file_offset: 0x5a0,
            file_size: 0x3000,
            vaddr: 0x15a0,
            executable: true,
        },
    ];
    let map_start = 0x7f00_0000_1000;
    assert_eq!(
        mapping_base(&segments, map_start, 0, 0x15a0),
        Some(0x7f00_0000_15a0)
    );
    // A mapping from the middle of the segment.
    assert_eq!(
        mapping_base(&segments, 0x7f00_0000_3000, 0x2000, 0x15a0),
        Some(0x7f00_0000_15a0)
    );
    assert_eq!(mapping_base(&segments, map_start, 0x9000, 0x15a0), None);
}

#[test]
fn code_regions_are_executable_files_and_the_vdso() {
    let regions = code_regions(std::process::id() as i32).unwrap();
    assert!(regions.iter().all(|r| r.executable));
    assert!(regions.iter().any(|r| r.path.contains("/libc.so.6")));
    assert!(
        regions
            .iter()
            .all(|r| r.path.starts_with('/') || r.path == VDSO)
    );
}

#[test]
fn not_an_object_or_not_x86_64_is_an_error() {
    assert!(compile(b"\x7fELF not really").is_err());
    assert!(compile(&[]).is_err());
}
