//! The compiled unwind tables kept between runs, on disk, and within one run, in memory: an
//! object compiles in milliseconds to a fraction of a second (libLLVM), and a target maps dozens.
//!
//! A table is keyed by its object's GNU build-id, which names the same build wherever it lies
//! (another path, a container's copy); an object without one is keyed by its path, size, inode
//! and modification time. The files sit in [`DEFAULT_DIR`] (or `PROFILER_CACHE_DIR`), a folder
//! of the profiler's user, not writable by others (it is not used otherwise), in a small
//! versioned format with a checksum: a file that does not read back whole is compiled again and
//! replaced, never trusted. A file is written under a temporary name and renamed, so that a
//! reader never sees half of one.

use std::{
    collections::HashMap,
    fs::{self, DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context;
use object::{Object, ReadCache, ReadRef};
use profiler_common::cpu::{UnwindRow, cfa};

use super::tables::{LoadSegment, ObjectTable, TableStats, compile_file};

/// Where the tables are kept unless `PROFILER_CACHE_DIR` says otherwise.
pub(crate) const DEFAULT_DIR: &str = "/var/cache/profiler/unwind";

/// The environment variable that moves the cache.
pub(crate) const DIR_VAR: &str = "PROFILER_CACHE_DIR";

/// The first bytes of a table file.
const MAGIC: &[u8; 8] = b"PRFUNWT\0";

/// The format's version, and the compiler's: raise it whenever either changes, so that files of
/// an older profiler are compiled again.
const VERSION: u32 = 1;

/// Bytes before the segments: magic, version, segment and row counts, a reserved word, base,
/// and the six counts of [`TableStats`].
const HEADER: usize = 8 + 4 * 4 + 8 + 6 * 4;
const SEGMENT: usize = 4 * 8;
const ROW: usize = 8;
const CHECKSUM: usize = 8;

/// Compiled tables by key: on disk (when a usable folder is set) and in memory.
#[derive(Debug)]
pub(crate) struct TableCache {
    dir: Option<PathBuf>,
    memo: Mutex<HashMap<String, Arc<ObjectTable>>>,
}

impl TableCache {
    /// A cache in `dir` (created, mode 0700, if missing); None or a folder that cannot be used
    /// (not ours, or writable by others): in memory only.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir: dir.filter(|d| usable(d)),
            memo: Mutex::default(),
        }
    }

    /// The cache in `PROFILER_CACHE_DIR`, else [`DEFAULT_DIR`].
    pub(crate) fn from_env() -> Self {
        let dir = std::env::var_os(DIR_VAR).map_or_else(|| PathBuf::from(DEFAULT_DIR), Into::into);
        Self::new(Some(dir))
    }

    #[cfg(test)]
    /// The folder the tables are written to, if any.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The table of the object file at `path`, and whether it was found ready (in this run or on
    /// disk) rather than compiled now. Only the parts of the file needed are read.
    pub(crate) fn load_or_compile(&self, path: &Path) -> anyhow::Result<(Arc<ObjectTable>, bool)> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file.metadata()?;
        let data = ReadCache::new(file);
        let object = object::File::parse(&data)
            .with_context(|| format!("{} is not an object file", path.display()))?;
        let key = key(&object).unwrap_or_else(|| {
            let mut hash = Fnv::default();
            hash.write(path.as_os_str().as_encoded_bytes());
            for n in [
                meta.len(),
                meta.ino(),
                meta.mtime() as u64,
                meta.mtime_nsec() as u64,
            ] {
                hash.write(&n.to_le_bytes());
            }
            format!("f{:016x}", hash.0)
        });
        self.get_or(key, || compile_file(&object))
    }

    /// The table of an object image in memory (the vDSO), as [`TableCache::load_or_compile`];
    /// without a build-id it is keyed by its bytes.
    pub(crate) fn load_or_compile_image(
        &self,
        image: &[u8],
    ) -> anyhow::Result<(Arc<ObjectTable>, bool)> {
        let object = object::File::parse(image).context("not an object image")?;
        let key = key(&object).unwrap_or_else(|| {
            let mut hash = Fnv::default();
            hash.write(image);
            format!("m{:016x}", hash.0)
        });
        self.get_or(key, || compile_file(&object))
    }

    /// The table of `key`: from memory, else from disk, else compiled (and written).
    fn get_or(
        &self,
        key: String,
        compile: impl FnOnce() -> anyhow::Result<ObjectTable>,
    ) -> anyhow::Result<(Arc<ObjectTable>, bool)> {
        if let Some(table) = self.memo().get(&key) {
            return Ok((Arc::clone(table), true));
        }
        let path = self.dir.as_ref().map(|d| d.join(format!("{key}.unwind")));
        let stored = path
            .as_ref()
            .and_then(|p| fs::read(p).ok())
            .and_then(|bytes| decode(&bytes));
        let from_disk = stored.is_some();
        let table = Arc::new(match stored {
            Some(table) => table,
            None => {
                let table = compile()?;
                if let Some(path) = &path {
                    // Best effort: a table that cannot be written is compiled again next time.
                    let _ = store(path, &encode(&table));
                }
                table
            }
        });
        let table = Arc::clone(self.memo().entry(key).or_insert(table));
        Ok((table, from_disk))
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ObjectTable>>> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cache key of an object with a GNU build-id: `b` and the id in hex.
fn key<'data, R: ReadRef<'data>>(object: &object::File<'data, R>) -> Option<String> {
    let id = object
        .build_id()
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("b{hex}"))
}

/// Whether `dir` can hold tables: created if missing (mode 0700), a folder of this user that
/// others cannot write to (a table read from it steers the kernel walk).
fn usable(dir: &Path) -> bool {
    let _ = DirBuilder::new().recursive(true).mode(0o700).create(dir);
    let Ok(meta) = fs::metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    meta.is_dir() && meta.uid() == me && meta.mode() & 0o022 == 0
}

/// Writes `bytes` to `path` through a fresh temporary file in its folder and a rename.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// 64-bit FNV-1a: the checksum of a file and the key of an object without a build-id.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The file bytes of a table: the header, the segments, the rows, and a checksum of all before
/// it, little-endian.
pub(crate) fn encode(table: &ObjectTable) -> Vec<u8> {
    let s = &table.stats;
    let mut out = Vec::with_capacity(
        HEADER + SEGMENT * table.segments.len() + ROW * table.rows.len() + CHECKSUM,
    );
    out.extend_from_slice(MAGIC);
    for n in [
        VERSION,
        table.segments.len() as u32,
        table.rows.len() as u32,
        0,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&table.base.to_le_bytes());
    for n in [s.fdes, s.rows, s.unsupported, s.plt, s.signal, s.end] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for seg in &table.segments {
        let flags = u64::from(seg.executable);
        for n in [seg.file_offset, seg.file_size, seg.vaddr, flags] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    for row in &table.rows {
        out.extend_from_slice(&row.pc.to_le_bytes());
        out.extend_from_slice(&row.cfa_offset.to_le_bytes());
        out.push(row.cfa);
        out.extend_from_slice(&row.rbp.to_le_bytes());
    }
    let mut sum = Fnv::default();
    sum.write(&out);
    out.extend_from_slice(&sum.0.to_le_bytes());
    out
}

/// Reads fixed-size little-endian fields off the front of a byte slice.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

/// The table in the file bytes `bytes`, if they are a whole, intact table of this version:
/// the length the counts give, the checksum, the stats matching the rows, the rows sorted with
/// known kinds and ending in a [`cfa::NONE`] row.
pub(crate) fn decode(bytes: &[u8]) -> Option<ObjectTable> {
    let (body, sum) = bytes.split_last_chunk::<CHECKSUM>()?;
    let mut check = Fnv::default();
    check.write(body);
    if check.0 != u64::from_le_bytes(*sum) {
        return None;
    }
    let mut f = Fields(body);
    if f.take::<8>()? != *MAGIC || f.u32()? != VERSION {
        return None;
    }
    let (segments, rows, _) = (f.u32()? as usize, f.u32()? as usize, f.u32()?);
    if body.len() != HEADER + SEGMENT.checked_mul(segments)? + ROW.checked_mul(rows)? {
        return None;
    }
    let base = f.u64()?;
    let [fdes, n_rows, unsupported, plt, signal, end] = [(); 6].map(|()| f.u32().unwrap_or(0));
    let stats = TableStats {
        fdes,
        rows: n_rows,
        unsupported,
        plt,
        signal,
        end,
    };
    let segments = (0..segments)
        .map(|_| {
            Some(LoadSegment {
                file_offset: f.u64()?,
                file_size: f.u64()?,
                vaddr: f.u64()?,
                executable: f.u64()? & 1 != 0,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let rows = (0..rows)
        .map(|_| {
            let [a, b, c, d, e, g, kind, rbp] = f.take::<ROW>()?;
            Some(UnwindRow {
                pc: u32::from_le_bytes([a, b, c, d]),
                cfa_offset: u16::from_le_bytes([e, g]),
                cfa: kind,
                rbp: rbp as i8,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let sorted = rows.windows(2).all(|w| w[0].pc < w[1].pc);
    let known = rows.iter().all(|r| r.cfa <= cfa::UNSUPPORTED);
    let ends = rows.last().is_none_or(|r| r.cfa == cfa::NONE);
    let table = ObjectTable {
        rows,
        base,
        segments,
        stats,
    };
    let counted = TableStats::of(&table.rows, fdes) == stats;
    (sorted && known && ends && counted).then_some(table)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
