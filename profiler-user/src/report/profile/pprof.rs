//! pprof (`.pb.gz`): a gzipped `perftools.profiles.Profile` protobuf, as `go tool pprof` and the
//! viewers built on it read it. The messages are declared here with the field numbers of pprof's
//! `profile.proto`, only those written.
//!
//! What is written:
//! - two values per sample: `samples/count` and `cpu/nanoseconds` (samples × the period), the
//!   period `1e9 / frequency` ns of `cpu/nanoseconds`;
//! - one location per distinct address, its lines innermost first (an inlined function before
//!   the one it was inlined into), none when the function is unknown (pprof shows the address);
//! - one function per distinct (name, source file);
//! - one mapping per module, its range the lowest to the highest address sampled in it (the
//!   profile knows no more of it), by address, so the executable usually comes first as pprof
//!   wants it;
//! - per sample, the labels `thread` (the thread's name, shared by a pool's workers) and `tid`
//!   (a number): `-tagroot=thread,tid` roots the graph at each thread, as the other formats do.

use std::{collections::HashMap, io::Write};

use flate2::{Compression, write::GzEncoder};
use prost::Message as _;

use super::{Profile, ProfileFrame};

/// The messages of `perftools.profiles`, those written.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// Writes the gzipped protobuf.
pub(super) fn write(profile: &Profile, out: &mut impl Write) -> anyhow::Result<()> {
    let bytes = encode(profile).encode_to_vec();
    let mut gzip = GzEncoder::new(out, Compression::default());
    gzip.write_all(&bytes)?;
    gzip.finish()?;
    Ok(())
}

/// The profile as pprof's message.
fn encode(profile: &Profile) -> proto::Profile {
    let mut tables = Tables::default();
    let mapping = tables.mappings(profile);
    let period = i64::try_from(profile.period_ns()).unwrap_or(i64::MAX);
    let samples_count = tables.value_type("samples", "count");
    let cpu_ns = tables.value_type("cpu", "nanoseconds");
    let (thread, tid) = (tables.string("thread"), tables.string("tid"));
    let sample = profile
        .counted()
        .map(|sample| {
            let count = i64::try_from(sample.count).unwrap_or(i64::MAX);
            proto::Sample {
                location_id: sample
                    .frames
                    .chunk_by(|frame, next| frame.inlined && frame.address == next.address)
                    .map(|frames| tables.location(frames, &mapping))
                    .collect(),
                value: vec![count, count.saturating_mul(period)],
                label: vec![
                    proto::Label {
                        key: thread,
                        str: tables.string(&sample.thread),
                        num: 0,
                    },
                    proto::Label {
                        key: tid,
                        str: 0,
                        num: i64::from(sample.tid),
                    },
                ],
            }
        })
        .collect();
    let comment = vec![tables.string(&profile.title())];
    proto::Profile {
        sample_type: vec![samples_count, cpu_ns.clone()],
        default_sample_type: cpu_ns.r#type,
        period_type: Some(cpu_ns),
        period,
        sample,
        comment,
        time_nanos: i64::try_from(profile.start_unix_ns).unwrap_or(i64::MAX),
        duration_nanos: (profile.duration_s * 1e9) as i64,
        mapping: tables.mapping,
        location: tables.location,
        function: tables.function,
        string_table: tables.strings,
    }
}

/// The tables that samples refer into, each entry once, by id (strings by index).
#[derive(Default)]
struct Tables {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    mapping: Vec<proto::Mapping>,
    location: Vec<proto::Location>,
    location_ids: HashMap<u64, u64>,
    function: Vec<proto::Function>,
    function_ids: HashMap<(String, Option<String>), u64>,
}

impl Tables {
    /// The index of `text` in the string table, whose first string is "" as pprof requires.
    fn string(&mut self, text: &str) -> i64 {
        if self.strings.is_empty() {
            self.strings.push(String::new());
            self.string_ids.insert(String::new(), 0);
        }
        if let Some(&id) = self.string_ids.get(text) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(text.to_owned());
        self.string_ids.insert(text.to_owned(), id);
        id
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    /// Fills the mapping table, one mapping per module, by address; returns each module's id.
    fn mappings(&mut self, profile: &Profile) -> HashMap<String, u64> {
        let mut modules: HashMap<&str, proto::Mapping> = HashMap::new();
        for frame in profile.counted().flat_map(|s| &s.frames) {
            let mapping = modules
                .entry(&frame.module)
                .or_insert_with(|| proto::Mapping {
                    memory_start: frame.address,
                    memory_limit: frame.address,
                    ..proto::Mapping::default()
                });
            mapping.memory_start = mapping.memory_start.min(frame.address);
            mapping.memory_limit = mapping.memory_limit.max(frame.address.saturating_add(1));
            mapping.has_functions |= frame.symbolized();
            mapping.has_filenames |= frame.file.is_some();
            mapping.has_line_numbers |= frame.line.is_some();
            mapping.has_inline_frames |= frame.inlined;
        }
        let mut modules: Vec<(&str, proto::Mapping)> = modules.into_iter().collect();
        modules.sort_by_key(|(name, mapping)| (mapping.memory_start, *name));
        let mut ids = HashMap::new();
        for (name, mut mapping) in modules {
            mapping.id = self.mapping.len() as u64 + 1;
            mapping.filename = self.string(name);
            ids.insert(name.to_owned(), mapping.id);
            self.mapping.push(mapping);
        }
        ids
    }

    /// The id of the location of `frames` (one address: a function and those inlined into it,
    /// innermost first); the first frames seen at an address make its location.
    fn location(&mut self, frames: &[ProfileFrame], mappings: &HashMap<String, u64>) -> u64 {
        let first = &frames[0];
        if let Some(&id) = self.location_ids.get(&first.address) {
            return id;
        }
        let line = frames
            .iter()
            .filter(|frame| frame.symbolized())
            .map(|frame| proto::Line {
                function_id: self.function(frame),
                line: frame.line.map_or(0, i64::from),
            })
            .collect();
        let id = self.location.len() as u64 + 1;
        self.location.push(proto::Location {
            id,
            mapping_id: mappings.get(&first.module).copied().unwrap_or(0),
            address: first.address,
            line,
        });
        self.location_ids.insert(first.address, id);
        id
    }

    /// The id of the frame's function, by name and source file.
    fn function(&mut self, frame: &ProfileFrame) -> u64 {
        let key = (frame.function.clone(), frame.file.clone());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let name = self.string(&frame.function);
        let filename = frame.file.as_deref().map_or(0, |file| self.string(file));
        let id = self.function.len() as u64 + 1;
        self.function.push(proto::Function {
            id,
            name,
            system_name: name,
            filename,
        });
        self.function_ids.insert(key, id);
        id
    }
}
