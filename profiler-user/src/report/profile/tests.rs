//! Each format is written from one synthetic profile (three threads, two of them named alike;
//! an inlined function; kernel frames; unknown functions; shared prefixes; a name that XML must
//! escape) and read back by a consumer that is not ours: inferno for the folded stacks, python3's
//! XML parser for the SVG, `protoc --decode` for pprof, python3's JSON parser for speedscope. A
//! missing consumer fails the test: `cargo xtask setup --tests` installs them.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsStr,
    fs,
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
};

use super::*;
use crate::outfile::tests::{Dir, mode};

/// 99 Hz: one sample stands for 1e9 / 99 ns, rounded down.
const PERIOD_NS: i64 = 10_101_010;

/// The folder of `profile.proto`, the schema the pprof test decodes with.
const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/report/profile");

fn frame(function: &str, module: &str, source: Option<(&str, u32)>, address: u64) -> ProfileFrame {
    ProfileFrame {
        function: function.into(),
        module: module.into(),
        file: source.map(|(file, _)| file.into()),
        line: source.map(|(_, line)| line),
        address,
        inlined: false,
        kernel: false,
        python: false,
    }
}

fn kernel(function: &str, address: u64) -> ProfileFrame {
    ProfileFrame {
        kernel: true,
        ..frame(function, "[kernel]", None, address)
    }
}

fn sample(thread: &str, tid: u32, frames: Vec<ProfileFrame>, count: u64) -> ProfileSample {
    ProfileSample {
        tid,
        thread: thread.into(),
        frames,
        count,
    }
}

/// The profile every format is checked on: 74 samples.
fn synthetic() -> Profile {
    let square = ProfileFrame {
        inlined: true,
        ..frame("square", "app", Some(("src/math.rs", 3)), 0x1010)
    };
    let compute = frame("compute", "app", Some(("src/main.rs", 20)), 0x1010);
    let main = frame("main", "app", Some(("src/main.rs", 40)), 0x1100);
    let start = frame("__libc_start_main", "libc.so.6", None, 0x7f00_0000_2000);
    let run = frame("run", "app", Some(("src/worker.rs", 8)), 0x1200);
    let thread_start = frame("start_thread", "libc.so.6", None, 0x7f00_0000_5000);
    let unknown = |address| frame("??", "libc.so.6", None, address);
    Profile {
        target: "demo (pid 1234)".into(),
        frequency_hz: 99,
        duration_s: 2.0,
        start_unix_ns: 1_700_000_000_000_000_000,
        samples: vec![
            sample(
                "main",
                1234,
                vec![square, compute, main.clone(), start.clone()],
                30,
            ),
            sample(
                "main",
                1234,
                vec![
                    frame("compute", "app", Some(("src/main.rs", 22)), 0x1020),
                    main.clone(),
                    start.clone(),
                ],
                10,
            ),
            sample(
                "main",
                1234,
                vec![
                    kernel("ksys_write", 0xffff_ffff_8100_0200),
                    kernel("do_syscall_64", 0xffff_ffff_8100_0100),
                    frame("std::io::Write::write_all<&mut W>", "app", None, 0x1400),
                    main,
                    start,
                ],
                5,
            ),
            sample(
                "worker",
                1235,
                vec![unknown(0x7f00_0000_4000), run.clone(), thread_start.clone()],
                20,
            ),
            sample(
                "worker",
                1235,
                vec![unknown(0x7f00_0000_4400), run.clone(), thread_start.clone()],
                2,
            ),
            sample("worker", 1236, vec![run.clone(), thread_start.clone()], 7),
            // Counted nothing: written nowhere.
            sample(
                "worker",
                1236,
                vec![frame("never", "app", None, 0x1300), run, thread_start],
                0,
            ),
        ],
    }
}

/// Writes the synthetic profile to `dir/name` and reads the file back.
fn written(dir: &Dir, name: &str, format: Format) -> Vec<u8> {
    let path = dir.0.join(name);
    assert_eq!(write_output(&path, &synthetic()).unwrap(), format);
    assert_eq!(mode(&path), 0o600);
    fs::read(&path).unwrap()
}

/// Runs a consumer of the files and returns what it printed. A consumer that is not installed
/// fails the test, with the package that provides it.
fn consume(program: &str, package: &str, args: &[&OsStr], stdin: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): install the Debian package {package} \
                 (cargo xtask setup --tests does)"
            )
        });
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes the synthetic profile to `name` and runs a python3 script on the file; the script
/// prints JSON, returned parsed.
fn python_reads(name: &str, format: Format, script: &str) -> serde_json::Value {
    let dir = Dir::new(&format!("profile-{name}"));
    written(&dir, name, format);
    let path = dir.0.join(name);
    let out = consume(
        "python3",
        "python3",
        &["-c".as_ref(), script.as_ref(), path.as_os_str()],
        b"",
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("python3 printed {out:?}: {e}"))
}

const FOLDED: [&str; 5] = [
    "main-1234;__libc_start_main;main;compute 10",
    "main-1234;__libc_start_main;main;compute;square 30",
    "main-1234;__libc_start_main;main;std::io::Write::write_all<&mut W>;do_syscall_64_[k];ksys_write_[k] 5",
    "worker-1235;start_thread;run;[libc.so.6] 22",
    "worker-1236;start_thread;run 7",
];

#[test]
fn folded_lines_are_exact_and_inferno_reads_them_all() {
    let dir = Dir::new("profile-folded");
    let text = String::from_utf8(written(&dir, "cpu.folded", Format::Folded)).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), FOLDED);
    assert!(text.ends_with('\n'));
    // inferno skips a line it cannot read, with a warning only: every sample must reach the
    // graph's root.
    let mut svg = Vec::new();
    let mut options = inferno::flamegraph::Options::default();
    inferno::flamegraph::from_lines(&mut options, text.lines(), &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("all (74 samples, 100%)"), "{svg}");
    assert!(svg.contains("square (30 samples, 40.54%)"), "{svg}");
}

#[test]
fn folded_names_that_would_break_the_format_are_cleaned() {
    let profile = Profile {
        samples: vec![sample(
            "io;pool",
            9,
            vec![frame("<[u8; 4] as\nDebug>::fmt", "app", None, 0x10)],
            3,
        )],
        ..synthetic()
    };
    let mut out = Vec::new();
    folded::write(&profile, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "io:pool-9;<[u8: 4] as Debug>::fmt 3\n"
    );
}

/// Prints the SVG's frame titles and its heading, as JSON.
const SVG_SCRIPT: &str = r#"
import json, sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg", root.tag
texts = {e.get("id"): "".join(e.itertext()) for e in root.iter(ns + "text") if e.get("id")}
print(json.dumps({
    "frames": [t.text for t in root.iter(ns + "title")],
    "title": texts.get("title"),
    "subtitle": texts.get("subtitle"),
}))
"#;

#[test]
fn the_flame_graph_is_xml_with_each_frame_and_its_samples() {
    let parsed = python_reads("cpu.svg", Format::FlameGraph, SVG_SCRIPT);
    assert_eq!(parsed["title"], "CPU: demo (pid 1234), 99 Hz");
    assert_eq!(parsed["subtitle"], "74 samples over 2.0 s");
    // "name (N samples, P%)": each frame's name and samples, sorted.
    let mut frames: Vec<(String, u64)> = parsed["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|title| {
            let title = title.as_str().unwrap();
            let (name, rest) = title.rsplit_once(" (").unwrap();
            let (count, _) = rest.split_once(" samples").unwrap();
            (name.to_owned(), count.replace(',', "").parse().unwrap())
        })
        .collect();
    frames.sort();
    let expected = [
        ("[libc.so.6]", 22),
        ("__libc_start_main", 45),
        ("all", 74),
        ("compute", 40),
        ("do_syscall_64", 5),
        ("ksys_write", 5),
        ("main", 45),
        ("main-1234", 45),
        ("run", 7),
        ("run", 22),
        ("square", 30),
        ("start_thread", 7),
        ("start_thread", 22),
        ("std::io::Write::write_all<&mut W>", 5),
        ("worker-1235", 22),
        ("worker-1236", 7),
    ];
    let expected: Vec<(String, u64)> = expected.iter().map(|&(n, c)| (n.into(), c)).collect();
    assert_eq!(frames, expected);
}

#[test]
fn a_profile_without_samples_draws_no_graph_and_leaves_no_file() {
    let dir = Dir::new("profile-empty");
    let path = dir.0.join("cpu.svg");
    let profile = Profile {
        samples: Vec::new(),
        ..synthetic()
    };
    let err = write_output(&path, &profile).unwrap_err();
    assert!(format!("{err:#}").contains("no samples"), "{err:#}");
    assert!(dir.names().is_empty());
}

/// A message as `protoc --decode` prints it: its fields in order.
#[derive(Debug, Default)]
struct Decoded(Vec<(String, Field)>);

#[derive(Debug)]
enum Field {
    /// As printed: a string still quoted.
    Scalar(String),
    Message(Decoded),
}

impl Decoded {
    /// Reads protoc's text format: `name: value` and `name {` … `}` lines.
    fn parse(lines: &mut std::str::Lines) -> Self {
        let mut fields = Vec::new();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if let Some(name) = line.strip_suffix(" {") {
                fields.push((name.to_owned(), Field::Message(Self::parse(lines))));
            } else {
                let (name, value) = line.split_once(": ").expect(line);
                fields.push((name.to_owned(), Field::Scalar(value.to_owned())));
            }
        }
        // A field the schema does not know is printed by number.
        for (name, _) in &fields {
            assert!(
                !name.starts_with(|c: char| c.is_ascii_digit()),
                "field {name}"
            );
        }
        Self(fields)
    }

    fn scalars<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter_map(move |(n, field)| match field {
            Field::Scalar(value) if n == name => Some(value.as_str()),
            _ => None,
        })
    }

    fn messages<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Decoded> {
        self.0.iter().filter_map(move |(n, field)| match field {
            Field::Message(message) if n == name => Some(message),
            _ => None,
        })
    }

    /// A number field (an int64 or a uint64); absent is 0, as proto3 leaves defaults out.
    fn num(&self, name: &str) -> i128 {
        self.scalars(name).next().map_or(0, |v| v.parse().unwrap())
    }

    fn message(&self, name: &str) -> &Decoded {
        self.messages(name).next().expect(name)
    }
}

/// The pprof file as `protoc --decode` reads it with our own `profile.proto`.
fn decoded_pprof() -> Decoded {
    let dir = Dir::new("profile-pprof");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&written(&dir, "cpu.pb.gz", Format::Pprof)[..])
        .read_to_end(&mut raw)
        .unwrap();
    let proto_path = format!("--proto_path={PROTO_DIR}");
    let args: [&OsStr; 3] = [
        proto_path.as_ref(),
        "--decode=perftools.profiles.Profile".as_ref(),
        "profile.proto".as_ref(),
    ];
    let text = consume("protoc", "protobuf-compiler", &args, &raw);
    Decoded::parse(&mut text.lines())
}

#[test]
fn pprof_decodes_with_its_schema_to_the_same_stacks() {
    let profile = decoded_pprof();
    let strings: Vec<String> = profile
        .scalars("string_table")
        .map(|s| {
            s.strip_prefix('"')
                .unwrap()
                .strip_suffix('"')
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(strings[0], "");
    let string = |field: &Decoded, name: &str| strings[field.num(name) as usize].clone();
    let value_type = |v: &Decoded| format!("{}/{}", string(v, "type"), string(v, "unit"));
    let sample_types: Vec<String> = profile.messages("sample_type").map(value_type).collect();
    assert_eq!(sample_types, ["samples/count", "cpu/nanoseconds"]);
    assert_eq!(
        value_type(profile.message("period_type")),
        "cpu/nanoseconds"
    );
    assert_eq!(profile.num("period"), PERIOD_NS.into());
    assert_eq!(string(&profile, "default_sample_type"), "cpu");
    assert_eq!(profile.num("time_nanos"), 1_700_000_000_000_000_000);
    assert_eq!(profile.num("duration_nanos"), 2_000_000_000);
    assert_eq!(
        strings[profile.num("comment") as usize],
        "CPU: demo (pid 1234), 99 Hz"
    );

    // Mappings by address: the executable first.
    let mappings: HashMap<i128, String> = profile
        .messages("mapping")
        .map(|m| (m.num("id"), string(m, "filename")))
        .collect();
    let order: Vec<&str> = profile
        .messages("mapping")
        .map(|m| &strings[m.num("filename") as usize][..])
        .collect();
    assert_eq!(order, ["app", "libc.so.6", "[kernel]"]);

    // One function per (name, file).
    let functions: HashMap<i128, (String, String)> = profile
        .messages("function")
        .map(|f| (f.num("id"), (string(f, "name"), string(f, "filename"))))
        .collect();
    assert_eq!(functions.len(), 9);
    assert!(
        functions
            .values()
            .any(|f| *f == ("square".into(), "src/math.rs".into()))
    );
    assert!(
        functions
            .values()
            .any(|f| *f == ("compute".into(), "src/main.rs".into()))
    );

    // One location per address; its lines' functions innermost first (no lines: unknown).
    let mut locations: HashMap<i128, Vec<String>> = HashMap::new();
    let mut addresses = Vec::new();
    for location in profile.messages("location") {
        let address = location.num("address");
        addresses.push(address);
        let lines: Vec<(String, i128)> = location
            .messages("line")
            .map(|l| (functions[&l.num("function_id")].0.clone(), l.num("line")))
            .collect();
        if address == 0x1010 {
            assert_eq!(lines, [("square".into(), 3), ("compute".into(), 20)]);
        }
        let module = &mappings[&location.num("mapping_id")];
        let names = if lines.is_empty() {
            vec![format!("{module}@{address:#x}")]
        } else {
            lines.into_iter().map(|(name, _)| name).collect()
        };
        locations.insert(location.num("id"), names);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 11);
    assert_eq!(locations.len(), 11);

    // Each sample back as `thread;root;…;leaf`, with its values.
    let mut stacks = BTreeMap::new();
    for sample in profile.messages("sample") {
        let labels: HashMap<String, &Decoded> = sample
            .messages("label")
            .map(|l| (string(l, "key"), l))
            .collect();
        let thread = format!(
            "{}-{}",
            string(labels["thread"], "str"),
            labels["tid"].num("num")
        );
        let mut frames: Vec<String> = sample
            .scalars("location_id")
            .flat_map(|id| locations[&id.parse::<i128>().unwrap()].clone())
            .collect();
        frames.push(thread);
        frames.reverse();
        let values: Vec<i64> = sample
            .scalars("value")
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(stacks.insert(frames.join(";"), values).is_none());
    }
    let expected = [
        ("main-1234;__libc_start_main;main;compute", 10),
        ("main-1234;__libc_start_main;main;compute;square", 30),
        (
            "main-1234;__libc_start_main;main;std::io::Write::write_all<&mut W>;do_syscall_64;ksys_write",
            5,
        ),
        ("worker-1235;start_thread;run;libc.so.6@0x7f0000004000", 20),
        ("worker-1235;start_thread;run;libc.so.6@0x7f0000004400", 2),
        ("worker-1236;start_thread;run", 7),
    ];
    let expected: BTreeMap<String, Vec<i64>> = expected
        .iter()
        .map(|&(stack, n)| (stack.to_owned(), vec![n, n * PERIOD_NS]))
        .collect();
    assert_eq!(stacks, expected);
}

/// Checks the file against speedscope's format and prints its stacks by name, as JSON.
const SPEEDSCOPE_SCRIPT: &str = r#"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
assert doc["exporter"].startswith("profiler@"), doc["exporter"]
frames = doc["shared"]["frames"]
for f in frames:
    assert isinstance(f["name"], str) and f["name"], f
    assert isinstance(f.get("file", ""), str), f
profiles = doc["profiles"]
assert 0 <= doc["activeProfileIndex"] < len(profiles)
stacks = []
for p in profiles:
    assert p["type"] == "sampled", p["type"]
    assert p["unit"] in ("none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes")
    assert len(p["samples"]) == len(p["weights"]), p["name"]
    for stack in p["samples"]:
        for i in stack:
            assert isinstance(i, int) and 0 <= i < len(frames), i
    assert all(w > 0 for w in p["weights"])
    assert p["endValue"] - p["startValue"] == sum(p["weights"]), p["name"]
    for stack, weight in zip(p["samples"], p["weights"]):
        stacks.append(";".join([p["name"]] + [frames[i]["name"] for i in stack]) + " %d" % weight)
print(json.dumps({
    "name": doc["name"],
    "profiles": [p["name"] for p in profiles],
    "stacks": stacks,
    "files": {f["name"]: f.get("file") for f in frames},
}))
"#;

#[test]
fn speedscope_loads_with_one_sampled_profile_per_thread() {
    let parsed = python_reads("cpu.speedscope.json", Format::Speedscope, SPEEDSCOPE_SCRIPT);
    assert_eq!(parsed["name"], "CPU: demo (pid 1234), 99 Hz");
    // The busiest thread first.
    assert_eq!(
        parsed["profiles"],
        serde_json::json!(["main-1234", "worker-1235", "worker-1236"])
    );
    // Within a thread, stacks by name, root first: as the folded lines, kernel unannotated.
    let folded = FOLDED.map(|line| line.replace("_[k]", ""));
    assert_eq!(parsed["stacks"], serde_json::json!(folded));
    let files = &parsed["files"];
    assert_eq!(files["square"], "src/math.rs");
    assert_eq!(files["ksys_write"], "[kernel]");
    assert_eq!(files["__libc_start_main"], "libc.so.6");
    assert_eq!(files["[libc.so.6]"], "libc.so.6");
}

#[test]
fn the_format_follows_from_the_file_name() {
    let format = |name: &str| Format::from_path(Path::new(name));
    assert_eq!(format("out/cpu.folded").unwrap(), Format::Folded);
    assert_eq!(format("CPU.SVG").unwrap(), Format::FlameGraph);
    assert_eq!(format("cpu.pb.gz").unwrap(), Format::Pprof);
    assert_eq!(format("cpu.speedscope.json").unwrap(), Format::Speedscope);
    let report = format("cpu.json").unwrap_err().to_string();
    assert!(report.contains("the report (--json)"), "{report}");
    for name in ["cpu.txt", "cpu.gz", ".svg", "cpu"] {
        let err = format(name).unwrap_err().to_string();
        for ending in [".folded", ".svg", ".pb.gz", ".speedscope.json"] {
            assert!(err.contains(ending), "{err}");
        }
        assert!(!err.contains("--json"), "{err}");
    }
}

#[test]
fn an_unknown_format_writes_nothing() {
    let dir = Dir::new("profile-unknown");
    assert!(write_output(&dir.0.join("cpu.txt"), &synthetic()).is_err());
    assert!(dir.names().is_empty());
}

#[test]
fn python_frames_are_named_with_their_file_and_line() {
    let py = ProfileFrame {
        python: true,
        ..frame(
            "Model.forward",
            "/srv/app/model.py",
            Some(("/srv/app/model.py", 42)),
            0x10,
        )
    };
    assert_eq!(py.name(), "Model.forward (model.py:42)");
    let no_line = ProfileFrame {
        line: None,
        ..py.clone()
    };
    assert_eq!(no_line.name(), "Model.forward (model.py)");
}
