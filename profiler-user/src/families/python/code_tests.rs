use std::{cell::RefCell, collections::HashMap, process::Command};

use super::*;
use crate::families::python::{layout, testing};

/// Code objects of a script, with the line of every instruction as the interpreter itself
/// says (`co_lines()`), printed by the interpreter.
const DUMP: &str = r#"
import sys
src = '''
def f(a,
      b):
    x = [i * 2
         for i in range(a)]
    try:
        return x[b]
    except IndexError:
        pass
    while a > 0:
        a -= 1
    return (a +
            b)

class C:
    def m(self):
        return lambda y: y + 1
'''
mod = compile(src, "<dump>", "exec")
def walk(c):
    yield c
    for k in c.co_consts:
        if hasattr(k, "co_code"):
            yield from walk(k)
for c in walk(mod):
    spans = ";".join(f"{s},{e},{'-' if l is None else l}" for s, e, l in c.co_lines())
    print(getattr(c, "co_qualname", c.co_name), c.co_firstlineno, c.co_linetable.hex(), spans)
"#;

fn check_interpreter(python: &std::path::Path, legacy: bool) {
    let out = Command::new(python)
        .args(["-c", DUMP])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    for l in text.lines() {
        let parts: Vec<&str> = l.split(' ').collect();
        let (name, first, table) = (parts[0], parts[1], parts[2]);
        let first: i32 = first.parse().unwrap();
        let table: Vec<u8> = (0..table.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&table[i..i + 2], 16).unwrap())
            .collect();
        for span in parts[3].split(';') {
            let v: Vec<&str> = span.split(',').collect();
            let (start, end): (i64, i64) = (v[0].parse().unwrap(), v[1].parse().unwrap());
            let line = (v[2] != "-").then(|| v[2].parse::<u32>().unwrap());
            for unit in start / 2..end / 2 {
                let decoded = if legacy {
                    line_of_310(&table, first, unit)
                } else {
                    line_of(&table, first, unit)
                };
                assert_eq!(
                    decoded,
                    line,
                    "{} {name} code unit {unit}",
                    python.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} instructions checked");
}

#[test]
fn line_tables_decode_as_the_interpreters_do() {
    for minor in [10, 11, 12, 13] {
        check_interpreter(&testing::interpreter(minor), minor == 10);
    }
    check_interpreter(std::path::Path::new("/usr/bin/python3.11"), false);
}

/// Memory made of a few objects at fixed addresses.
#[derive(Default)]
struct Fake(RefCell<HashMap<u64, Vec<u8>>>);

impl Fake {
    fn put(&self, addr: u64, bytes: &[u8]) {
        self.0.borrow_mut().insert(addr, bytes.to_vec());
    }
}

impl Memory for Fake {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        for (&at, bytes) in self.0.borrow().iter() {
            if addr >= at && addr + buf.len() as u64 <= at + bytes.len() as u64 {
                let from = (addr - at) as usize;
                buf.copy_from_slice(&bytes[from..from + buf.len()]);
                return true;
            }
        }
        false
    }
}

/// A compact str object of 3.12's layout.
fn str_object(text: &str, ascii: bool) -> Vec<u8> {
    let mut b = vec![0u8; 56];
    let chars: Vec<char> = text.chars().collect();
    b[16..24].copy_from_slice(&(chars.len() as u64).to_le_bytes());
    let kind: u32 = if ascii { 1 } else { 2 };
    let state = (kind << 2) | (1 << 5) | (u32::from(ascii) << 6);
    b[32..36].copy_from_slice(&state.to_le_bytes());
    if ascii {
        b.truncate(40);
        b.extend(text.bytes());
    } else {
        for c in chars {
            b.extend((c as u16).to_le_bytes());
        }
    }
    b
}

#[test]
fn strings_are_read_ascii_or_wide() {
    let l = layout::builtin(12).unwrap();
    let mem = Fake::default();
    mem.put(0x1000, &str_object("forward", true));
    mem.put(0x2000, &str_object("día→", false));
    assert_eq!(read_str(&mem, &l, 0x1000).as_deref(), Some("forward"));
    assert_eq!(read_str(&mem, &l, 0x2000).as_deref(), Some("día→"));
    assert_eq!(read_str(&mem, &l, 0x3000), None);
}

/// A code object of `l`'s layout: its type, its name at 0x1000, its file at 0x2000 and its line
/// table at 0x3000, its first line; its code units follow (from `code_adaptive` on).
fn code_object(l: &layout::Layout, code_type: u64, first: i32) -> Vec<u8> {
    let mut c = vec![0u8; 256];
    c[8..16].copy_from_slice(&code_type.to_le_bytes());
    for (at, v) in [
        (l.code_qualname, 0x1000u64),
        (l.code_filename, 0x2000),
        (l.code_linetable, 0x3000),
    ] {
        c[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    c[l.code_firstlineno as usize..l.code_firstlineno as usize + 4]
        .copy_from_slice(&first.to_le_bytes());
    c
}

#[test]
fn frames_are_named_from_their_code_objects() {
    let l = layout::builtin(12).unwrap();
    let mem = Fake::default();
    let code_type = 0x7000u64;
    let code = 0x10000u64;
    mem.put(code, &code_object(&l, code_type, 10));
    mem.put(0x1000, &str_object("Model.forward", true));
    mem.put(0x2000, &str_object("model.py", true));
    // Two entries: 2 code units on line 10 (short form), 3 on line 12 (one-line form, +2).
    let table = [0x80 | (13 << 3) | 1, 0, 0x80 | (12 << 3) | 2, 0, 0];
    let mut bytes = vec![0u8; 32];
    bytes[16..24].copy_from_slice(&(table.len() as u64).to_le_bytes());
    bytes.extend(table);
    mem.put(0x3000, &bytes);
    let mut codes = Codes::default();
    let start = code + l.code_adaptive;
    let frames = [
        PyFrame {
            code: code | frame_flag::ENTRY,
            instr: start + 2 * 3,
        },
        PyFrame {
            code: 0x99990,
            instr: 0,
        },
    ];
    let resolved = codes.resolve(&mem, &l, code_type, &frames);
    assert_eq!(codes.len(), 1);
    let named = name(&l, &resolved);
    assert_eq!(named[0].frame.function, "Model.forward");
    assert_eq!(named[0].frame.file.as_deref(), Some("model.py"));
    assert_eq!(named[0].frame.line, Some(12));
    assert!(named[0].entry && !named[0].shim);
    assert_eq!(named[1].frame.function, "??");
    assert_eq!(named[1].frame.module, UNKNOWN_CODE);
}

#[test]
fn a_code_object_the_kernel_sends_replaces_the_one_read_at_its_address() {
    let l = layout::builtin(12).unwrap();
    let mem = Fake::default();
    let code_type = 0x7000u64;
    let code = 0x10000u64;
    let c = code_object(&l, code_type, 0);
    mem.put(0x1000, &str_object("<module>", true));
    mem.put(0x2000, &str_object("<string>", true));
    let mut table = vec![0u8; 32];
    table[16..24].copy_from_slice(&1u64.to_le_bytes());
    table.push(0x80 | (13 << 3));
    mem.put(0x3000, &table);
    mem.put(code, &c);
    let frames = [PyFrame {
        code,
        instr: code + l.code_adaptive,
    }];
    let mut codes = Codes::default();
    let first = codes.resolve(&mem, &l, code_type, &frames);
    // The first object is freed, another allocated at its address: the kernel sends it before
    // the first stack it is in (what is in the target's memory by then may be anything).
    codes.remember(
        code,
        [0x1800, 0x2000, 0x3800, 30],
        CodeInfo {
            qualname: "middle".into(),
            filename: "m.py".into(),
            firstlineno: 30,
            linetable: vec![0x80 | (13 << 3), 0],
        },
    );
    mem.put(code, &[0xffu8; 256]);
    let second = codes.resolve(&mem, &l, code_type, &frames);
    assert_eq!(name(&l, &first)[0].frame.function, "<module>");
    assert_eq!(name(&l, &second)[0].frame.function, "middle");
    assert_eq!(name(&l, &second)[0].frame.line, Some(30));
}
