use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use super::*;
use crate::{
    families::cpu::{
        cache::TableCache,
        tables::{Layout, ObjectTable, VDSO, code_regions, read_vdso},
        testing::gcc,
    },
    symbols::{
        symbolize::{AddrSymbolizer, MappingSnapshot},
        unwind::Unwinder,
    },
    tracee::task::{blocked_syscall, read_u64},
};

const fn row(pc: u32, kind: u8, cfa_offset: u16, rbp: i8) -> UnwindRow {
    UnwindRow {
        pc,
        cfa_offset,
        cfa: kind,
        rbp,
    }
}

const fn regs(pc: u64, sp: u64, bp: u64) -> Regs {
    Regs { pc, sp, bp }
}

/// One object of code at 0x1000..0x2000, its table based at 0x1000:
/// - 0x1000..0x1010: CFA rsp + 8 (a leaf);
/// - 0x1010..0x1020: CFA rsp + 16, rbp saved at CFA - 16;
/// - 0x1020..0x1030: CFA rbp + 16;
/// - 0x1030..0x1040: a PLT entry (CFA rsp + 8, + 8 from byte 11);
/// - 0x1040..0x1050: a signal trampoline;
/// - 0x1050..0x1060: the outermost frame;
/// - 0x1060..0x1070: a rule not evaluated; 0x1070 on: no table.
fn layout() -> (Vec<Mapping>, Vec<UnwindRow>) {
    let rows = vec![
        row(0x00, cfa::RSP, 8, RBP_UNCHANGED),
        row(0x10, cfa::RSP, 16, -2),
        row(0x20, cfa::RBP, 16, -2),
        row(0x30, cfa::PLT, 8, 11),
        row(0x40, cfa::SIGNAL, 0, 0),
        row(0x50, cfa::END, 0, 0),
        row(0x60, cfa::UNSUPPORTED, 0, 0),
        row(0x70, cfa::NONE, 0, 0),
    ];
    let mapping = Mapping {
        start: 0x1000,
        end: 0x2000,
        base: 0x1000,
        first_row: 0,
        rows: rows.len() as u32,
    };
    (vec![mapping], rows)
}

/// Walks the synthetic layout over `memory`.
fn run(regs: Regs, memory: &[(u64, u64)], max: usize) -> Walk {
    let (mappings, rows) = layout();
    let memory: HashMap<u64, u64> = memory.iter().copied().collect();
    walk(&mappings, &rows, regs, |a| memory.get(&a).copied(), max)
}

#[test]
fn each_kind_of_row_steps_as_the_kernel_does() {
    // A leaf at 0x1005 returns into the rsp + 16 function (after its call at 0x1017); that
    // returns into the rbp-based one, which returns to the outermost frame.
    let regs = regs(0x1005, 0x8000, 0x7777);
    let memory = [
        (0x8000, 0x1018),
        // rsp + 16 frame: sp 0x8008, CFA 0x8018, rbp saved at 0x8008.
        (0x8010, 0x1028),
        (0x8008, 0x9000),
        // rbp frame: CFA = 0x9000 + 16.
        (0x9008, 0x1051),
        (0x9000, 0x0),
    ];
    let w = run(regs, &memory, 16);
    assert_eq!(w.frames, vec![0x1005, 0x1018, 0x1028, 0x1051]);
    assert_eq!((w.end, w.flags), (end::OUTERMOST, 0));
    assert_eq!(run(regs, &memory, 2).end, end::DEPTH);
    assert_eq!(run(regs, &memory, 2).frames.len(), 2);
    assert_eq!(run(regs, &memory[..2], 16).end, end::READ_FAILED);
}

#[test]
fn a_plt_entry_counts_its_push_from_the_threshold() {
    for (pc, ra_at) in [(0x1030, 0x8000), (0x103a, 0x8000), (0x103b, 0x8008)] {
        let regs = Regs {
            pc,
            sp: 0x8000,
            bp: 0,
        };
        let w = run(regs, &[(ra_at, 0x1055)], 8);
        assert_eq!(w.frames, vec![pc, 0x1055], "{pc:#x}");
        assert_eq!(w.end, end::OUTERMOST);
    }
}

#[test]
fn a_signal_frame_gives_the_interrupted_registers_exactly() {
    let sp = 0x8000;
    let regs = Regs {
        pc: 0x1040,
        sp,
        bp: 0,
    };
    // The interrupted pc is the first byte of the outermost function: looked up as is (one
    // byte back is the unsupported rule's end of the trampoline's neighbour).
    let memory = [
        (sp + SIGFRAME_RIP, 0x1050),
        (sp + SIGFRAME_RSP, 0x9000),
        (sp + SIGFRAME_RBP, 0x9100),
    ];
    let w = run(regs, &memory, 8);
    assert_eq!(w.frames, vec![0x1040, 0x1050]);
    assert_eq!((w.end, w.flags), (end::OUTERMOST, flag::SIGNAL));
    assert_eq!(run(regs, &memory[..2], 8).end, end::READ_FAILED);
}

#[test]
fn the_frame_pointer_takes_over_where_no_rule_does() {
    // No table at 0x1075, an unsupported rule at 0x1065; the frame pointer chain goes on to
    // the outermost frame.
    let regs = regs(0x1075, 0x8000, 0x8100);
    let memory = [
        (0x8108, 0x1066),
        (0x8100, 0x8200),
        (0x8208, 0x1052),
        (0x8200, 0),
    ];
    let w = run(regs, &memory, 8);
    assert_eq!(w.frames, vec![0x1075, 0x1066, 0x1052]);
    assert_eq!(w.end, end::OUTERMOST);
    assert_eq!(w.flags, flag::FP_NO_TABLE | flag::FP_UNSUPPORTED);
    // A frame pointer of 0 ends the chain; one below the stack pointer is no frame.
    assert_eq!(run(Regs { bp: 0, ..regs }, &memory, 8).end, end::ZERO);
    let below = run(Regs { bp: 0x10, ..regs }, &memory, 8);
    assert_eq!((below.end, below.frames.len()), (end::NO_TABLE, 1));
    let unsupported = Regs { pc: 0x1065, ..regs };
    assert_eq!(run(unsupported, &[], 8).end, end::UNSUPPORTED);
}

#[test]
fn a_cfa_not_above_the_stack_pointer_is_a_bad_frame() {
    // An rbp-based frame with rbp below sp.
    let regs = regs(0x1025, 0x8000, 0x100);
    assert_eq!(run(regs, &[], 8).end, end::BAD_FRAME);
    let zero = run(Regs { pc: 0x1005, ..regs }, &[(0x8000, 0)], 8);
    assert_eq!((zero.end, zero.frames.len()), (end::ZERO, 1));
}

/// A program whose `main` calls four functions deep, built without frame pointers; the last
/// reads its stdin, directly (no arguments) or in a handler of the signal it raises.
const PROGRAM: &str = r#"
#include <signal.h>
#include <unistd.h>

static volatile int sink;

static void on_signal(int sig) {
    char c;
    sink += (int)read(0, &c, 1) + sig;
}

__attribute__((noinline, noclone)) int level4(int x) {
    char c;
    if (x & 1)
        raise(SIGUSR1);
    else
        sink += (int)read(0, &c, 1);
    return sink + x;
}
__attribute__((noinline, noclone)) int level3(int x) { return level4(x + 2) * 3; }
__attribute__((noinline, noclone)) int level2(int x) { return level3(x + 2) * 5; }
__attribute__((noinline, noclone)) int level1(int x) { return level2(x + 2) * 7; }

int main(int argc, char **argv) {
    (void)argv;
    signal(SIGUSR1, on_signal);
    return level1(argc - 1) & 0x7f;
}
"#;

/// Kills and reaps the child when dropped, so that a failed assertion leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tables of every code mapping of `pid`, laid out for the walk.
fn target_layout(pid: i32) -> Layout {
    let cache = TableCache::new(None);
    let mut layout = Layout::default();
    for region in code_regions(pid).unwrap() {
        let table: Arc<ObjectTable> = if region.path == VDSO {
            let (_, image) = read_vdso(pid).unwrap();
            cache.load_or_compile_image(&image).unwrap().0
        } else {
            cache.load_or_compile(Path::new(&region.path)).unwrap().0
        };
        let base = table
            .mapping_base(region.start, region.file_offset)
            .unwrap();
        layout.add(region.start, region.end, base, &table).unwrap();
    }
    layout
}

/// Runs the program (with `args`) until it reads its stdin, walks its stack, and checks it
/// against the existing user-side unwinder; returns the function names of the frames.
fn walk_program(program: &Path, args: &[&str]) -> (Walk, Vec<String>) {
    let mut child = Reaped(
        Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    let started = Instant::now();
    let blocked = loop {
        if let Ok(Some(s)) = blocked_syscall(pid, pid)
            && s.nr == 0
        {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never read");
        std::thread::sleep(Duration::from_millis(5));
    };
    let layout = target_layout(pid);
    // /proc/PID/syscall gives no rbp: the walk starts without one, as the kernel's would for a
    // register it could not read, and the frames that save it recover it.
    let regs = regs(blocked.pc, blocked.sp, 0);
    let read = |addr| read_u64(pid, addr).ok();
    let walked = walk(&layout.mappings, &layout.rows, regs, read, 64);
    let unwound = Unwinder::new().unwind(pid, blocked.pc, blocked.sp, 64);
    let mut maps = MappingSnapshot::default();
    maps.refresh(pid);
    let mut symbolizer = AddrSymbolizer::new();
    let names = walked
        .frames
        .iter()
        .enumerate()
        .map(|(i, &pc)| {
            symbolizer
                .frame(&maps, if i == 0 { pc } else { pc - 1 })
                .function
        })
        .collect();
    child.0.stdin.take().unwrap().write_all(b"x").unwrap();
    assert_eq!(walked.frames, unwound, "the two unwinders disagree");
    (walked, names)
}

/// Checks that a frame of each of `names` (a prefix of the function's name, glibc's internal
/// `__GI_` aliases taken off) stands in `frames`, the first ones in that order.
#[track_caller]
fn in_order(frames: &[String], names: &[&str]) {
    let at: Vec<Option<usize>> = names
        .iter()
        .map(|n| {
            let named = |f: &String| f.trim_start_matches("__GI_").starts_with(n);
            frames.iter().position(named)
        })
        .collect();
    assert!(at.iter().all(Option::is_some), "{names:?} in {frames:#?}");
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "{names:?} in {frames:#?}"
    );
}

#[test]
fn walks_a_real_stack_without_frame_pointers_to_start() {
    let flags = ["-O2", "-fomit-frame-pointer", "-g0"];
    let Some(program) = gcc("levels", &[("levels.c", PROGRAM)], &flags) else {
        return;
    };
    let (w, names) = walk_program(&program, &[]);
    assert_eq!((w.end, w.flags), (end::OUTERMOST, 0), "{names:#?}");
    let chain = [
        "level4",
        "level3",
        "level2",
        "level1",
        "main",
        "__libc_start",
    ];
    in_order(&names, &chain);
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:#?}"
    );

    // Through the signal trampoline: the handler's frames, then the interrupted ones.
    let (w, names) = walk_program(&program, &["signal"]);
    assert_eq!(w.end, end::OUTERMOST, "{names:#?}");
    assert_eq!(w.flags, flag::SIGNAL, "{names:#?}");
    let chain = ["on_signal", "raise", "level4", "level1", "main", "_start"];
    in_order(&names, &chain);
}
