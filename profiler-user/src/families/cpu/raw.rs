//! Samples sent whole: a program that has just executed runs before its objects' tables are in
//! the kernel's list, and its first samples would be unwound by frame pointer alone (most code
//! keeps none). The kernel sends those with their registers and a copy of their stack instead
//! (`RawSample`); they are unwound here, with the same walk over the same tables, once the list
//! holds their program.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use profiler_common::cpu::{
    CPU_STACK_DEPTH, Mapping, RAW_STACK_BYTES, RawSample, SampleKey, UnwindRow, cpu_stack_hash,
};

use super::walk::{Regs, walk};

/// A sample whose pc no list holds yet is walked anyway after this long (its frames then come
/// from the frame pointer, and it counts as not complete).
const WAIT: Duration = Duration::from_secs(1);

/// One sample sent whole.
struct Copy {
    at: Instant,
    tid: u32,
    regs: Regs,
    kernel: u64,
    sp: u64,
    stack: Vec<u8>,
}

impl Copy {
    /// A word of the copied stack; above the copy, of the target's memory now (`pid`): the
    /// copy ends where the stack did, or 8 KiB up, and the frames past it are the thread's
    /// outermost (`main`, its start routine), which stay where they are while it runs. None
    /// where neither can be read (the walk then ends there, as a read of memory that failed).
    fn read(&self, pid: i32, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        match self.stack.get(off..off + 8) {
            Some(bytes) => Some(u64::from_le_bytes(bytes.try_into().ok()?)),
            None => crate::tracee::task::read_u64(pid, addr).ok(),
        }
    }
}

/// The samples sent whole, and those unwound so far.
#[derive(Default)]
pub(crate) struct Deferred {
    pending: Vec<Copy>,
    /// Unwound samples by key, and their user stacks by hash.
    pub samples: HashMap<SampleKey, u64>,
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Samples unwound here.
    pub unwound: u64,
}

impl Deferred {
    /// Keeps a ring-buffer record of a `RawSample` (ignored if it is not one).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if bytes.len() < size_of::<RawSample>() {
            return;
        }
        // SAFETY: the record holds a whole `RawSample` (checked above), plain old data that any
        // bytes make valid; read unaligned, as the ring buffer only aligns to 8.
        let raw: RawSample = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = (raw.len as usize).min(RAW_STACK_BYTES);
        self.pending.push(Copy {
            at: Instant::now(),
            tid: raw.header.tid,
            regs: Regs {
                pc: raw.pc,
                sp: raw.sp,
                bp: raw.bp,
            },
            kernel: raw.kernel,
            sp: raw.sp,
            stack: raw.stack[..len].to_vec(),
        });
    }

    /// Unwinds the pending samples whose pc the list holds (all of them when `all`, or when
    /// they have waited [`WAIT`]).
    pub(crate) fn unwind(&mut self, pid: i32, mappings: &[Mapping], rows: &[UnwindRow], all: bool) {
        let held = |pc: u64| {
            mappings
                .iter()
                .any(|m| (m.start..m.end).contains(&pc) && m.rows > 0)
        };
        let mut waiting = Vec::new();
        for copy in std::mem::take(&mut self.pending) {
            if !all && !held(copy.regs.pc) && copy.at.elapsed() < WAIT {
                waiting.push(copy);
                continue;
            }
            let w = walk(
                mappings,
                rows,
                copy.regs,
                |a| copy.read(pid, a),
                CPU_STACK_DEPTH,
            );
            let user = if w.frames.is_empty() {
                0
            } else {
                let hash = cpu_stack_hash(&w.frames);
                self.stacks.entry(hash).or_insert(w.frames);
                hash
            };
            let key = SampleKey {
                tid: copy.tid,
                how: w.end | (w.flags << 8),
                user,
                kernel: copy.kernel,
                python: 0,
            };
            *self.samples.entry(key).or_default() += 1;
            self.unwound += 1;
        }
        self.pending = waiting;
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::cpu::{cfa, end};

    use super::*;

    /// A sample in a function of one row (CFA = rsp + 16, rbp unchanged) called from one whose
    /// row says it is the outermost frame: two frames, complete.
    #[test]
    fn a_copied_stack_is_walked_with_the_tables() {
        let mappings = [Mapping {
            start: 0x1000,
            end: 0x3000,
            base: 0x1000,
            first_row: 0,
            rows: 3,
        }];
        let row = |pc, cfa, cfa_offset| UnwindRow {
            pc,
            cfa_offset,
            cfa,
            rbp: 0,
        };
        let rows = [
            row(0x0, cfa::RSP, 16),
            row(0x100, cfa::END, 0),
            row(0x200, cfa::NONE, 0),
        ];
        let sp = 0x7000_0000u64;
        let mut stack = vec![0u8; 32];
        // The return address at CFA - 8 = sp + 8: inside the outer function.
        stack[8..16].copy_from_slice(&0x1150u64.to_le_bytes());
        let mut d = Deferred::default();
        d.pending.push(Copy {
            at: Instant::now(),
            tid: 7,
            regs: Regs {
                pc: 0x1010,
                sp,
                bp: 0,
            },
            kernel: 0,
            sp,
            stack,
        });
        // Not in any list yet: it waits.
        // No process 0 to read past the copy: the copy alone.
        d.unwind(0, &[], &rows, false);
        assert_eq!((d.pending.len(), d.unwound), (1, 0));
        d.unwind(0, &mappings, &rows, false);
        assert_eq!((d.pending.len(), d.unwound), (0, 1));
        let (key, n) = d.samples.iter().next().unwrap();
        assert_eq!((key.tid, key.end(), *n), (7, end::OUTERMOST, 1));
        assert_eq!(d.stacks[&key.user], [0x1010, 0x1150]);
    }
}
