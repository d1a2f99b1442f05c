use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::families::cpu::testing::gcc;

/// A fresh cache folder for one test (removed when dropped).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cpu-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Self(dir.join("unwind"))
    }

    /// The table files in it.
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// A small shared object built with the build-id `id` (`none`: without one).
fn object(name: &str, id: &str) -> Option<PathBuf> {
    let source = "int f(int x) { return x * 3; }\nint g(int x) { return f(x) + 1; }\n";
    let build_id = format!("-Wl,--build-id={id}");
    let c = format!("{name}.c");
    gcc(
        name,
        &[(&c, source)],
        &["-O2", "-shared", "-fPIC", &build_id],
    )
}

#[test]
fn tables_round_trip_through_the_file_format() {
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let table = super::super::tables::compile(&fs::read(libc).unwrap()).unwrap();
    let bytes = encode(&table);
    assert_eq!(decode(&bytes), Some(table.clone()));
    // Every shortening, and a flipped byte anywhere, is refused.
    for len in [0, 7, HEADER, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(decode(&bytes[..len]), None, "{len} bytes");
    }
    for at in [0, 8, 12, 24, HEADER + 3, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert_eq!(decode(&bad), None, "byte {at} flipped");
    }
    // A well-formed file of rows out of order (its checksum right) is refused too.
    let mut unsorted = table;
    unsorted.rows.swap(1, 2);
    assert_eq!(decode(&encode(&unsorted)), None);
}

#[test]
fn a_second_run_reads_the_table_from_disk() {
    let dir = Dir::new("disk");
    let Some(path) = object("disk.so", "0x0123456789abcdef") else {
        return;
    };
    let first = TableCache::new(Some(dir.0.clone()));
    let (compiled, ready) = first.load_or_compile(&path).unwrap();
    assert!(!ready);
    let mode = fs::metadata(&dir.0).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(dir.files(), vec![dir.0.join("b0123456789abcdef.unwind")]);
    // The same run keeps it in memory; another reads it back.
    let (again, ready) = first.load_or_compile(&path).unwrap();
    assert!(ready && Arc::ptr_eq(&compiled, &again));
    let (read, ready) = TableCache::new(Some(dir.0.clone()))
        .load_or_compile(&path)
        .unwrap();
    assert!(ready);
    assert_eq!(*read, *compiled);
    assert!(compiled.stats.fdes >= 2, "{:?}", compiled.stats);
}

#[test]
fn a_damaged_file_is_compiled_again_and_replaced() {
    let dir = Dir::new("damaged");
    let Some(path) = object("damaged.so", "0xfeedface") else {
        return;
    };
    let (compiled, _) = TableCache::new(Some(dir.0.clone()))
        .load_or_compile(&path)
        .unwrap();
    let file = dir.0.join("bfeedface.unwind");
    let good = fs::read(&file).unwrap();
    for damage in [&good[..good.len() - 3], b"PRFUNWT\0garbage".as_slice(), &[]] {
        fs::write(&file, damage).unwrap();
        let (table, ready) = TableCache::new(Some(dir.0.clone()))
            .load_or_compile(&path)
            .unwrap();
        assert!(!ready);
        assert_eq!(*table, *compiled);
        assert_eq!(fs::read(&file).unwrap(), good);
    }
}

#[test]
fn the_key_is_the_build_id_wherever_the_object_lies() {
    let dir = Dir::new("key");
    let (Some(a), Some(b)) = (object("a.so", "0xabcd"), object("b.so", "0xabce")) else {
        return;
    };
    let copy = dir.0.parent().unwrap().join("copy.so");
    fs::create_dir_all(dir.0.parent().unwrap()).unwrap();
    fs::copy(&a, &copy).unwrap();
    let cache = TableCache::new(Some(dir.0.clone()));
    assert!(!cache.load_or_compile(&a).unwrap().1);
    // Another path, the same build: found.
    assert!(cache.load_or_compile(&copy).unwrap().1);
    assert!(!cache.load_or_compile(&b).unwrap().1);
    let names = ["babcd.unwind", "babce.unwind"].map(|n| dir.0.join(n));
    assert_eq!(dir.files(), names);
}

#[test]
fn without_a_build_id_the_key_is_the_file() {
    let dir = Dir::new("nobuildid");
    let Some(path) = object("plain.so", "none") else {
        return;
    };
    let cache = TableCache::new(Some(dir.0.clone()));
    assert!(!cache.load_or_compile(&path).unwrap().1);
    let files = dir.files();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with('f') && name.ends_with(".unwind"), "{name}");
    // Rewritten (a new modification time): a new key.
    let data = fs::read(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::remove_file(&path).unwrap();
    fs::write(&path, data).unwrap();
    assert!(
        !TableCache::new(Some(dir.0.clone()))
            .load_or_compile(&path)
            .unwrap()
            .1
    );
    assert_eq!(dir.files().len(), 2);
}

#[test]
fn a_folder_others_can_write_is_not_used() {
    let dir = Dir::new("open");
    fs::create_dir_all(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(TableCache::new(Some(dir.0.clone())).dir(), None);
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        TableCache::new(Some(dir.0.clone())).dir(),
        Some(dir.0.as_path())
    );
}

#[test]
fn the_vdso_image_is_keyed_and_kept() {
    let Some((_, image)) = super::super::tables::read_vdso(std::process::id() as i32) else {
        eprintln!("skipped: no [vdso] mapped");
        return;
    };
    let cache = TableCache::new(None);
    let (table, ready) = cache.load_or_compile_image(&image).unwrap();
    assert!(!ready && table.stats.fdes > 0);
    assert!(cache.load_or_compile_image(&image).unwrap().1);
    assert!(cache.load_or_compile_image(b"not an object").is_err());
}
