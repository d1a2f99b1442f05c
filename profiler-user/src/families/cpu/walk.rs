//! The kernel walk of the `cpu` family, in user space: the same steps over the same
//! [`Mapping`]s and [`UnwindRow`]s, with the target's memory read through a function. The tests
//! unwind real stacks with it, and a stack the kernel cut short can be walked again here to see
//! where and why.
//!
//! One step, from a frame's pc, sp and bp: the mapping that holds the pc (frame 0 and a frame a
//! signal interrupted: the pc itself; any other: the return address - 1, inside its call), the
//! last row of its object with `row.pc <= pc - mapping.base`, then by the row's kind:
//! - [`cfa::RSP`], [`cfa::RBP`]: CFA = sp or bp + `cfa_offset`; [`cfa::PLT`]: CFA = sp +
//!   `cfa_offset`, + 8 when `(pc & 15) >= row.rbp`. The CFA must lie above sp; the return address
//!   is at CFA - 8, the caller's bp kept, lost (0) or at CFA + 8 * `row.rbp`, its sp the CFA.
//! - [`cfa::SIGNAL`]: the interrupted pc, sp and bp are in the signal frame at sp
//!   ([`SIGFRAME_RIP`], [`SIGFRAME_RSP`], [`SIGFRAME_RBP`]).
//! - [`cfa::END`]: the stack is complete.
//! - [`cfa::NONE`], [`cfa::UNSUPPORTED`], or no mapping or row: the frame pointer (bp must not be
//!   0 nor below sp): the return address at bp + 8, the caller's bp at bp, its sp bp + 16.
//!
//! A return address of 0 ends the walk ([`end::ZERO`]).

use profiler_common::cpu::{
    Mapping, RBP_LOST, RBP_UNCHANGED, SIGFRAME_RBP, SIGFRAME_RIP, SIGFRAME_RSP, UnwindRow, cfa,
    end, flag,
};

use super::tables::row_for;

/// The registers a walk starts from: the thread's user pc, sp and bp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// A walked stack: frame 0 the pc, then the return addresses (the pc a signal interrupted, after
/// a signal frame), innermost first; how the walk ended ([`end`]) and what it went through
/// ([`flag`] bits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    pub frames: Vec<u64>,
    pub end: u32,
    pub flags: u32,
}

/// The row that covers `pc`: None outside every mapping, in a mapping without a table, or
/// before its object's first row.
fn lookup<'a>(mappings: &[Mapping], rows: &'a [UnwindRow], pc: u64) -> Option<&'a UnwindRow> {
    let after = mappings.partition_point(|m| m.start <= pc);
    let mapping = mappings.get(after.checked_sub(1)?)?;
    if pc >= mapping.end || mapping.rows == 0 {
        return None;
    }
    let first = mapping.first_row as usize;
    let rows = rows.get(first..first + mapping.rows as usize)?;
    row_for(rows, pc.checked_sub(mapping.base)?)
}

/// Walks the stack from `regs` over `mappings` (sorted by start) and `rows`, reading the
/// target's memory with `read` (a u64 at an address, None where it cannot), keeping at most
/// `max` frames.
pub(crate) fn walk(
    mappings: &[Mapping],
    rows: &[UnwindRow],
    regs: Regs,
    read: impl Fn(u64) -> Option<u64>,
    max: usize,
) -> Walk {
    let Regs {
        mut pc,
        mut sp,
        mut bp,
    } = regs;
    let mut walk = Walk::default();
    let done = |mut walk: Walk, how: u32| {
        walk.end = how;
        walk
    };
    if pc == 0 {
        return done(walk, end::ZERO);
    }
    // The pc of frame 0 is exact; so is one a signal interrupted.
    let mut exact = true;
    loop {
        if walk.frames.len() >= max {
            return done(walk, end::DEPTH);
        }
        walk.frames.push(pc);
        let at = if exact { pc } else { pc - 1 };
        let row = lookup(mappings, rows, at).copied().unwrap_or(UnwindRow {
            cfa: cfa::NONE,
            ..UnwindRow::default()
        });
        let (next_pc, next_sp, next_bp) = match row.cfa {
            cfa::END => return done(walk, end::OUTERMOST),
            cfa::SIGNAL => {
                walk.flags |= flag::SIGNAL;
                let regs = [SIGFRAME_RIP, SIGFRAME_RSP, SIGFRAME_RBP]
                    .map(|off| read(sp.wrapping_add(off)));
                let [Some(rip), Some(rsp), Some(rbp)] = regs else {
                    return done(walk, end::READ_FAILED);
                };
                exact = true;
                (rip, rsp, rbp)
            }
            cfa::RSP | cfa::RBP | cfa::PLT => {
                let from = if row.cfa == cfa::RBP { bp } else { sp };
                let mut cfa = from.wrapping_add(u64::from(row.cfa_offset));
                if row.cfa == cfa::PLT && (pc & 15) >= row.rbp as u64 {
                    cfa = cfa.wrapping_add(8);
                }
                if cfa <= sp {
                    return done(walk, end::BAD_FRAME);
                }
                let Some(ra) = read(cfa.wrapping_sub(8)) else {
                    return done(walk, end::READ_FAILED);
                };
                let caller_bp = match row.rbp {
                    _ if row.cfa == cfa::PLT => bp,
                    RBP_UNCHANGED => bp,
                    RBP_LOST => 0,
                    units => match read(cfa.wrapping_add_signed(8 * i64::from(units))) {
                        Some(saved) => saved,
                        None => return done(walk, end::READ_FAILED),
                    },
                };
                exact = false;
                (ra, cfa, caller_bp)
            }
            kind => {
                let (fell_back, failed) = if kind == cfa::NONE {
                    (flag::FP_NO_TABLE, end::NO_TABLE)
                } else {
                    (flag::FP_UNSUPPORTED, end::UNSUPPORTED)
                };
                walk.flags |= fell_back;
                if bp == 0 {
                    return done(walk, end::ZERO);
                }
                if bp < sp {
                    return done(walk, failed);
                }
                let (Some(ra), Some(saved)) = (read(bp.wrapping_add(8)), read(bp)) else {
                    return done(walk, failed);
                };
                exact = false;
                (ra, bp.wrapping_add(16), saved)
            }
        };
        if next_pc == 0 {
            return done(walk, end::ZERO);
        }
        (pc, sp, bp) = (next_pc, next_sp, next_bp);
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
