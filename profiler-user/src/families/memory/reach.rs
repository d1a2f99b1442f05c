//! The reachability verdict, as valgrind's memcheck and LeakSanitizer give it: which outstanding
//! blocks a pointer still reaches, which only lost blocks reach, and which nothing reaches.
//!
//! Conservative marking over the words of a stopped process:
//! - **roots**: every general-purpose register of every thread, each thread's stack from its
//!   stack pointer (less the 128-byte red zone) up, and every other word of writable memory that
//!   is not inside a tracked block (the executable's and libraries' data and bss, and memory the
//!   profiler did not see allocated: blocks from before an attach, the allocator's own records);
//! - **a pointer** is any 8-byte-aligned word whose value falls inside a tracked block (its start
//!   or an interior address, as LeakSanitizer counts it);
//! - blocks a root reaches are marked reachable, and their words are followed in turn;
//! - of the blocks left, one that another unreached block points to is **indirectly lost**, the
//!   rest are **definitely lost**.
//!
//! Conservative means it errs toward reachable: a stale word that happens to hold a block's
//! address keeps it alive. A block is never called lost while an aligned pointer to it exists.

use std::time::Instant;

/// A tracked, outstanding block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub addr: u64,
    pub size: u64,
    pub site: u64,
}

impl Block {
    /// The end of the addresses that reach it (a zero-byte block still has its own address).
    fn end(&self) -> u64 {
        self.addr.saturating_add(self.size.max(1))
    }
}

/// What the scan concluded of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Reachable,
    IndirectlyLost,
    DefinitelyLost,
}

/// Reads the stopped process's memory.
pub(crate) trait Memory {
    /// Fills `buf` from `addr`; returns how many bytes from the start could be read (fewer when
    /// the range runs into memory that is not mapped or not readable).
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize;
}

/// A range of memory scanned as roots (`[start, end)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: u64,
    pub end: u64,
}

/// What the scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Work {
    /// Bytes of memory read: roots and blocks.
    pub bytes: u64,
    /// Of those, bytes of roots.
    pub root_bytes: u64,
}

/// The marking ran past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfTime {
    pub work: Work,
}

/// Bytes read at once from a root range.
const CHUNK: usize = 1 << 20;

/// The marking state over `blocks` (sorted by address, not overlapping).
pub(crate) struct Marker<'b, M: Memory> {
    blocks: &'b [Block],
    memory: M,
    reached: Vec<bool>,
    work: Vec<usize>,
    done: Work,
    deadline: Instant,
    /// Bounds of every block's addresses: a quick test before the search.
    low: u64,
    high: u64,
    buf: Vec<u8>,
}

impl<'b, M: Memory> Marker<'b, M> {
    pub(crate) fn new(blocks: &'b [Block], memory: M, deadline: Instant) -> Self {
        debug_assert!(blocks.windows(2).all(|w| w[0].addr < w[1].addr));
        Self {
            blocks,
            memory,
            reached: vec![false; blocks.len()],
            work: Vec::new(),
            done: Work::default(),
            deadline,
            low: blocks.first().map_or(u64::MAX, |b| b.addr),
            high: blocks.iter().map(Block::end).max().unwrap_or(0),
            buf: Vec::new(),
        }
    }

    /// The block that address `v` falls in.
    fn find(&self, v: u64) -> Option<usize> {
        if v < self.low || v >= self.high {
            return None;
        }
        let i = self
            .blocks
            .partition_point(|b| b.addr <= v)
            .checked_sub(1)?;
        (v < self.blocks[i].end()).then_some(i)
    }

    fn reach(&mut self, v: u64) {
        if let Some(i) = self.find(v)
            && !self.reached[i]
        {
            self.reached[i] = true;
            self.work.push(i);
        }
    }

    /// Marks what the register values point to.
    pub(crate) fn words(&mut self, words: &[u64]) {
        for &w in words {
            self.reach(w);
        }
    }

    /// Marks what the words of `range` point to, skipping the tracked blocks inside it (they
    /// are roots only once reached).
    pub(crate) fn range(&mut self, range: Range) -> Result<(), OutOfTime> {
        let start = range.start.next_multiple_of(8);
        let mut at = start;
        // The first block at or past the range's start.
        let mut next = self.blocks.partition_point(|b| b.end() <= at);
        while at < range.end {
            // Skip a block that covers `at`.
            if let Some(b) = self.blocks.get(next)
                && b.addr <= at
            {
                at = at.max(b.end().next_multiple_of(8));
                next += 1;
                continue;
            }
            let gap_end = self
                .blocks
                .get(next)
                .map_or(range.end, |b| b.addr.min(range.end));
            let len = (gap_end.saturating_sub(at) as usize).min(CHUNK);
            if len < 8 {
                at = gap_end.max(at + 8);
                continue;
            }
            let got = self.read_words(at, len, None);
            self.done.root_bytes += got as u64;
            // A range that runs into unreadable memory goes on past that page.
            at = if got == len {
                at + len as u64
            } else {
                (at + got as u64 + 1).next_multiple_of(4096)
            };
            self.out_of_time()?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `addr` and marks the blocks its words reach (all but block `skip`).
    fn read_words(&mut self, addr: u64, len: usize, skip: Option<usize>) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len, 0);
        let got = self.memory.read(addr, &mut buf[..len]);
        self.done.bytes += got as u64;
        for word in buf[..got - got % 8].chunks_exact(8) {
            let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if let Some(i) = self.find(v)
                && Some(i) != skip
                && !self.reached[i]
            {
                self.reached[i] = true;
                self.work.push(i);
            }
        }
        self.buf = buf;
        got
    }

    fn out_of_time(&self) -> Result<(), OutOfTime> {
        if Instant::now() >= self.deadline {
            Err(OutOfTime { work: self.done })
        } else {
            Ok(())
        }
    }

    /// Follows every reached block's words until nothing new is reached.
    pub(crate) fn follow(&mut self) -> Result<(), OutOfTime> {
        let mut n = 0u32;
        while let Some(i) = self.work.pop() {
            let b = self.blocks[i];
            self.scan_block(b, None);
            n += 1;
            if n.is_multiple_of(256) {
                self.out_of_time()?;
            }
        }
        Ok(())
    }

    /// Reads block `b`'s words and marks what they reach (block `skip` aside).
    fn scan_block(&mut self, b: Block, skip: Option<usize>) {
        let end = b.addr + b.size;
        let mut at = b.addr.next_multiple_of(8);
        while at < end {
            let len = ((end - at) as usize).min(CHUNK);
            let got = self.read_words(at, len, skip);
            // A block may hold pages that cannot be read (a thread stack's guard page): the
            // read goes on past them.
            at = if got == len {
                at + len as u64
            } else {
                (at + got as u64 + 1).next_multiple_of(4096)
            };
        }
    }

    /// The verdict on every block (in `blocks`' order), and the work done: the blocks not
    /// reached are read, and one that another of them points to is indirectly lost.
    pub(crate) fn finish(mut self) -> Result<(Vec<Class>, Work), OutOfTime> {
        let lost: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| !self.reached[i])
            .collect();
        // Mark, without following, what each lost block points to (itself aside).
        let mut pointed = vec![false; self.blocks.len()];
        for (n, &i) in lost.iter().enumerate() {
            self.work.clear();
            self.scan_block(self.blocks[i], Some(i));
            // Only lost blocks are pushed here (a reached one is marked already); the mark is
            // undone, since a lost block's pointer does not make it reachable.
            for j in self.work.drain(..) {
                pointed[j] = true;
                self.reached[j] = false;
            }
            if n % 256 == 255 {
                self.out_of_time()?;
            }
        }
        let classes = (0..self.blocks.len())
            .map(|i| {
                if self.reached[i] {
                    Class::Reachable
                } else if pointed[i] {
                    Class::IndirectlyLost
                } else {
                    Class::DefinitelyLost
                }
            })
            .collect();
        Ok((classes, self.done))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;

    /// Memory as a map of 8-byte words; a page marked unreadable reads short.
    #[derive(Default)]
    struct Fake {
        words: BTreeMap<u64, u64>,
        unreadable: Vec<Range>,
    }

    impl Fake {
        fn put(&mut self, addr: u64, value: u64) {
            self.words.insert(addr, value);
        }
    }

    impl Memory for &Fake {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
            let mut got = 0;
            for (i, chunk) in buf.chunks_mut(8).enumerate() {
                let a = addr + 8 * i as u64;
                if self.unreadable.iter().any(|r| a >= r.start && a < r.end) {
                    break;
                }
                let v = self.words.get(&a).copied().unwrap_or(0).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
                got += chunk.len();
            }
            got
        }
    }

    fn block(addr: u64, size: u64) -> Block {
        Block {
            addr,
            size,
            site: addr,
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Heap blocks at 0x10000 + 0x100 * i, 64 bytes each; a "global" range at 0x1000..0x2000.
    fn heap(n: u64) -> Vec<Block> {
        (0..n).map(|i| block(0x10000 + 0x100 * i, 64)).collect()
    }

    const GLOBALS: Range = Range {
        start: 0x1000,
        end: 0x2000,
    };

    fn classes(blocks: &[Block], mem: &Fake, roots: &[Range], regs: &[u64]) -> Vec<Class> {
        let mut m = Marker::new(blocks, mem, later());
        m.words(regs);
        for r in roots {
            m.range(*r).unwrap();
        }
        m.follow().unwrap();
        m.finish().unwrap().0
    }

    #[test]
    fn a_global_pointer_keeps_a_block_and_what_it_points_to() {
        let blocks = heap(3);
        let mut mem = Fake::default();
        mem.put(0x1008, 0x10000);
        // Block 0 points into the middle of block 1 (an interior pointer).
        mem.put(0x10008, 0x10100 + 40);
        let got = classes(&blocks, &mem, &[GLOBALS], &[]);
        assert_eq!(
            got,
            [Class::Reachable, Class::Reachable, Class::DefinitelyLost]
        );
    }

    #[test]
    fn a_list_whose_head_is_dropped_is_one_definite_and_the_rest_indirect() {
        let blocks = heap(5);
        let mut mem = Fake::default();
        for i in 0..4 {
            mem.put(0x10000 + 0x100 * i, 0x10000 + 0x100 * (i + 1));
        }
        let got = classes(&blocks, &mem, &[GLOBALS], &[]);
        assert_eq!(got[0], Class::DefinitelyLost);
        assert!(got[1..].iter().all(|c| *c == Class::IndirectlyLost));
    }

    #[test]
    fn a_register_is_a_root_and_a_self_pointer_is_not() {
        let blocks = heap(2);
        let mut mem = Fake::default();
        // Block 1 points to itself only.
        mem.put(0x10100, 0x10100);
        let got = classes(&blocks, &mem, &[GLOBALS], &[0x10000 + 63]);
        assert_eq!(got, [Class::Reachable, Class::DefinitelyLost]);
    }

    #[test]
    fn words_inside_tracked_blocks_are_no_roots_but_the_gaps_are() {
        // A root range over the whole heap: block 0 points to block 1, and nothing else does;
        // an untracked word between the blocks points to block 2.
        let blocks = heap(3);
        let mut mem = Fake::default();
        mem.put(0x10000, 0x10100);
        mem.put(0x10080, 0x10200);
        let all = Range {
            start: 0x10000,
            end: 0x10300,
        };
        let got = classes(&blocks, &mem, &[all], &[]);
        assert_eq!(
            got,
            [
                Class::DefinitelyLost,
                Class::IndirectlyLost,
                Class::Reachable
            ]
        );
    }

    #[test]
    fn an_unreadable_page_is_skipped_and_the_rest_still_read() {
        let blocks = heap(2);
        let mut mem = Fake::default();
        mem.put(0x1008, 0x10000);
        mem.put(0x3008, 0x10100);
        mem.unreadable.push(Range {
            start: 0x1000,
            end: 0x2000,
        });
        let roots = Range {
            start: 0x1000,
            end: 0x4000,
        };
        let got = classes(&blocks, &mem, &[roots], &[]);
        assert_eq!(got, [Class::DefinitelyLost, Class::Reachable]);
    }

    #[test]
    fn unaligned_words_and_addresses_past_a_block_reach_nothing() {
        let blocks = vec![block(0x10000, 10), block(0x10100, 0)];
        let mut mem = Fake::default();
        // Just past block 0's 10 bytes; and block 1 (zero bytes) by its own address.
        mem.put(0x1000, 0x10000 + 10);
        mem.put(0x1010, 0x10100);
        let got = classes(&blocks, &mem, &[GLOBALS], &[]);
        assert_eq!(got, [Class::DefinitelyLost, Class::Reachable]);
    }

    #[test]
    fn a_block_is_read_past_its_unreadable_pages() {
        // A mapping whose first page is a guard page, reached from a register; its last page
        // points to block 1.
        let blocks = vec![block(0x20000, 0x3000), block(0x30000, 64)];
        let mut mem = Fake::default();
        mem.unreadable.push(Range {
            start: 0x20000,
            end: 0x21000,
        });
        mem.put(0x22ff8, 0x30000);
        let got = classes(&blocks, &mem, &[], &[0x22000]);
        assert_eq!(got, [Class::Reachable, Class::Reachable]);
    }

    #[test]
    fn a_cycle_of_lost_blocks_is_lost() {
        let blocks = heap(2);
        let mut mem = Fake::default();
        mem.put(0x10000, 0x10100);
        mem.put(0x10100, 0x10000);
        let got = classes(&blocks, &mem, &[GLOBALS], &[]);
        assert!(got.iter().all(|c| *c != Class::Reachable), "{got:?}");
    }

    #[test]
    fn a_past_deadline_stops_the_marking() {
        let blocks = heap(1);
        let mem = Fake::default();
        let mut m = Marker::new(&blocks, &mem, Instant::now());
        assert!(m.range(GLOBALS).is_err());
    }

    #[test]
    fn work_counts_the_bytes_read() {
        let blocks = heap(1);
        let mut mem = Fake::default();
        mem.put(0x1000, 0x10000);
        let mut m = Marker::new(&blocks, &mem, later());
        m.range(GLOBALS).unwrap();
        m.follow().unwrap();
        let (_, work) = m.finish().unwrap();
        assert_eq!(work.root_bytes, 0x1000);
        assert_eq!(work.bytes, 0x1000 + 64);
    }
}
