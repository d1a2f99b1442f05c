//! The target's objects and their unwind tables: compiled (or read from the cache) once per
//! object, appended to the kernel's rows, and pointed at by the mapping list, which follows the
//! target's mappings as libraries come and go.

use std::{collections::HashMap, path::Path, sync::Arc, time::Instant};

use aya::Ebpf;
use profiler_common::cpu::{
    MAPPINGS_MAX, Mapping, RAW_BUDGET, UNWIND_ROWS_MAX, UNWIND_ROWS_SPARE, UnwindRow, cfa,
};

use super::{
    cache::TableCache,
    kernel::{self, Rows},
    tables::{self, LoadSegment, ObjectTable},
};
use crate::{
    report::cpu::TablesInfo,
    tracee::{self, Module, Region},
};

/// One object's table, once loaded.
struct Entry {
    /// Until the rows are written (the kernel's array does not exist before the load).
    table: Option<Arc<ObjectTable>>,
    first_row: Option<u32>,
    rows: u32,
    table_base: u64,
    segments: Vec<LoadSegment>,
    /// Its signal trampolines (`__restore_rt`): ranges of row offsets.
    trampolines: Vec<(u64, u64)>,
}

/// An object as the target maps it: its path and inode (a file replaced at the same path is
/// another object).
type ObjectId = (String, u64);

/// The `[vdso]`, kept to name its frames.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vdso {
    pub start: u64,
    pub end: u64,
    pub image: Vec<u8>,
}

pub(crate) struct Objects {
    pid: i32,
    entries: HashMap<ObjectId, Entry>,
    rows: Option<Rows>,
    /// The executable regions last written for the kernel, and those seen at the last tick.
    written: Vec<Region>,
    /// The mapping list last written.
    mappings: Vec<Mapping>,
    /// The maps text whose executable regions were last written.
    last_text: String,
    /// The raw-sample budget to write with the next list.
    arm: Option<u32>,
    /// Where each table's rows were placed, by the table's address (the cache hands one table
    /// to every name of an object; the table is kept, so that its address stays its own).
    placed: HashMap<usize, (Arc<ObjectTable>, u32)>,
    seen: Option<Vec<Region>>,
    cache: TableCache,
    pub info: TablesInfo,
    pub vdso: Option<Vdso>,
    /// Where the target's signal trampolines are (`[start, end)`), to name their frames: the
    /// libc a distribution ships has no symbol for `__restore_rt`.
    pub trampolines: Vec<(u64, u64)>,
}

impl Objects {
    pub(crate) fn new(pid: i32) -> Self {
        Self {
            pid,
            entries: HashMap::new(),
            rows: None,
            written: Vec::new(),
            mappings: Vec::new(),
            last_text: String::new(),
            arm: Some(RAW_BUDGET),
            placed: HashMap::new(),
            seen: None,
            cache: TableCache::from_env(),
            info: TablesInfo::default(),
            vdso: None,
            trampolines: Vec::new(),
        }
    }

    /// Compiles (or reads from the cache) the tables of the modules the target maps or will
    /// map, before the programs are loaded: their rows size the kernel's array.
    pub(crate) fn prepare(&mut self, modules: &[Module]) {
        for m in modules {
            // `run` lists what the command will map, its executable first: that may be a
            // script (a shim that executes the real program), which is never mapped.
            let mut magic = [0u8; 4];
            let elf = std::fs::File::open(&m.open_path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok_and(|()| magic == *b"\x7fELF");
            if !elf {
                continue;
            }
            let inode = std::fs::metadata(&m.open_path).map_or(0, |md| {
                use std::os::unix::fs::MetadataExt as _;
                md.ino()
            });
            // The kernel names a mapping by its resolved path (/usr/lib/..., not /lib/...).
            let path = if m.open_path == m.path {
                std::fs::canonicalize(&m.path).unwrap_or_else(|_| m.path.clone())
            } else {
                m.path.clone()
            };
            let id = (path.display().to_string(), inode);
            self.load_file(id, &m.open_path);
        }
    }

    /// Rows the kernel's array is sized for: those compiled so far, and room for more.
    pub(crate) fn capacity(&self) -> u32 {
        let rows: u64 = self.entries.values().map(|e| u64::from(e.rows)).sum();
        (rows + u64::from(UNWIND_ROWS_SPARE)).min(u64::from(UNWIND_ROWS_MAX)) as u32
    }

    /// The programs are loaded: maps the rows and writes the tables compiled so far.
    pub(crate) fn attach(&mut self, ebpf: &mut Ebpf, capacity: u32) -> anyhow::Result<()> {
        self.rows = Some(Rows::map(ebpf, capacity as usize)?);
        let ids: Vec<ObjectId> = self.entries.keys().cloned().collect();
        for id in ids {
            self.write_rows(&id);
        }
        // No list yet, and the budget for the samples of a program that executes before its
        // list is written (`run`'s command, at once).
        kernel::write_mappings(ebpf, &[], self.arm.take())
    }

    /// Follows the target's executable mappings: once they are the same two calls running
    /// (`settled`: at once), loads the tables of new objects and writes the mapping list.
    pub(crate) fn refresh(&mut self, ebpf: &mut Ebpf, settled: bool) {
        // Before `run`'s command executes, the target is a copy of the profiler itself: the same
        // executable and the same command line (a command that is the profiler's own executable,
        // as `profiler demo`'s workload is, has another).
        let exe = |pid: &str| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let cmdline = |pid: &str| std::fs::read(format!("/proc/{pid}/cmdline")).ok();
        let pid = self.pid.to_string();
        if exe(&pid) == exe("self") && cmdline(&pid) == cmdline("self") {
            return;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else {
            return;
        };
        // Most ticks find the maps as they were written: nothing to parse.
        if text == self.last_text {
            return;
        }
        let now: Vec<Region> = tracee::parse_regions(&text)
            .into_iter()
            .filter(|r| r.executable)
            .collect();
        if now.is_empty() {
            return;
        }
        if now == self.written {
            self.last_text = text;
            return;
        }
        // A command just executed, or a library being loaded, is still being mapped: tables
        // loaded before the dynamic linker is done would miss objects.
        if !settled && self.seen.as_ref() != Some(&now) {
            self.seen = Some(now);
            return;
        }
        let mut mappings = Vec::new();
        for r in &now {
            if let Some(m) = self.mapping(r) {
                mappings.push(m);
            }
        }
        mappings.sort_by_key(|m| m.start);
        mappings.truncate(MAPPINGS_MAX as usize);
        if kernel::write_mappings(ebpf, &mappings, self.arm.take()).is_ok() {
            self.written = now;
            self.mappings = mappings;
            self.last_text = text;
        }
    }

    /// The next exec's first samples, taken before its tables are in place, are sent whole:
    /// sets the budget of such samples with the next write of the list.
    pub(crate) fn arm_raw(&mut self) {
        self.arm = Some(RAW_BUDGET);
    }

    /// The mapping list last written, and the rows it points into.
    pub(crate) fn layout(&self) -> (&[Mapping], &[UnwindRow]) {
        let rows = self.rows.as_ref().map_or(&[][..], Rows::written);
        (&self.mappings, rows)
    }

    /// The kernel's mapping for region `r` (None: no table, the walk uses the frame pointer).
    fn mapping(&mut self, r: &Region) -> Option<Mapping> {
        let id: ObjectId = if r.path == tables::VDSO {
            (tables::VDSO.into(), r.start)
        } else if r.path.starts_with('/') {
            (r.path.trim_end_matches(" (deleted)").to_string(), r.inode)
        } else {
            // Anonymous code (a JIT): no table.
            return None;
        };
        if !self.entries.contains_key(&id) {
            if r.path == tables::VDSO {
                self.load_vdso(id.clone(), r);
            } else {
                let path = tracee::host_path(self.pid, Path::new(&id.0));
                self.load_file(id.clone(), &path);
            }
            self.write_rows(&id);
        }
        let e = self.entries.get(&id)?;
        let first_row = e.first_row?;
        let base = tables::mapping_base(&e.segments, r.start, r.file_offset, e.table_base)?;
        for &(from, to) in &e.trampolines {
            let range = (base + from, base + to);
            if (r.start..r.end).contains(&range.0) && !self.trampolines.contains(&range) {
                self.trampolines.push(range);
            }
        }
        Some(Mapping {
            start: r.start,
            end: r.end,
            base,
            first_row,
            rows: e.rows,
        })
    }

    fn load_file(&mut self, id: ObjectId, path: &Path) {
        if self.entries.contains_key(&id) {
            return;
        }
        let started = Instant::now();
        let loaded = self.cache.load_or_compile(path);
        self.insert(id, loaded, started);
    }

    fn load_vdso(&mut self, id: ObjectId, r: &Region) {
        let started = Instant::now();
        let mut image = vec![0; (r.end - r.start) as usize];
        let loaded = tracee::task::read_memory(self.pid, r.start, &mut image)
            .map_err(anyhow::Error::from)
            .and_then(|()| self.cache.load_or_compile_image(&image));
        self.vdso = Some(Vdso {
            start: r.start,
            end: r.end,
            image,
        });
        self.insert(id, loaded, started);
    }

    fn insert(
        &mut self,
        id: ObjectId,
        loaded: anyhow::Result<(Arc<ObjectTable>, bool)>,
        started: Instant,
    ) {
        match loaded {
            Ok((table, cached)) => {
                if cached {
                    self.info.from_cache += 1;
                } else {
                    self.info.compiled += 1;
                    self.info.compile_time += started.elapsed().as_secs_f64();
                }
                let entry = Entry {
                    rows: table.rows.len() as u32,
                    table_base: table.base,
                    segments: table.segments.clone(),
                    trampolines: table
                        .rows
                        .windows(2)
                        .filter(|w| w[0].cfa == cfa::SIGNAL)
                        .map(|w| (u64::from(w[0].pc), u64::from(w[1].pc)))
                        .collect(),
                    table: Some(table),
                    first_row: None,
                };
                self.entries.insert(id, entry);
            }
            Err(e) => {
                self.info.without_table.push(format!("{}: {e:#}", id.0));
                self.entries.insert(
                    id,
                    Entry {
                        table: None,
                        first_row: None,
                        rows: 0,
                        table_base: 0,
                        segments: Vec::new(),
                        trampolines: Vec::new(),
                    },
                );
            }
        }
    }

    /// Appends object `id`'s rows to the kernel's, once the array exists.
    fn write_rows(&mut self, id: &ObjectId) {
        let Some(rows) = self.rows.as_mut() else {
            return;
        };
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let Some(table) = e.table.take() else {
            return;
        };
        // One object under two names (a hard link, a path the loader spelled otherwise): its
        // rows once.
        let key = Arc::as_ptr(&table) as usize;
        if let Some((_, first)) = self.placed.get(&key) {
            e.first_row = Some(*first);
            return;
        }
        if table.rows.is_empty() {
            self.info
                .without_table
                .push(format!("{}: no unwind information", id.0));
            return;
        }
        match rows.append(&table.rows) {
            Some(first) => {
                e.first_row = Some(first);
                self.placed.insert(key, (Arc::clone(&table), first));
                self.info.objects += 1;
                self.info.rows = rows.used();
            }
            None => self.info.without_table.push(format!(
                "{}: no room for its {} rows ({} of {} used)",
                id.0,
                table.rows.len(),
                rows.used(),
                rows.capacity()
            )),
        }
        self.info.capacity = rows.capacity();
    }
}
