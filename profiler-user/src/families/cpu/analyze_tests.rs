use std::collections::HashMap;

use profiler_common::cpu::{SampleKey, count, cpu_stack_hash, end, flag};

use super::*;

/// Names addresses from a table: 0x1000 * k + anything is function `names[k]`; addresses of
/// 0x9000 and up are inlined into the function below them (two frames).
struct Names(Vec<&'static str>);

impl Names {
    fn frame(&self, ip: u64, module: &str) -> Frame {
        Frame {
            function: self
                .0
                .get((ip / 0x1000) as usize)
                .unwrap_or(&"??")
                .to_string(),
            module: module.into(),
            offset: format!("{ip:#x}"),
            file: None,
            line: None,
        }
    }
}

impl Resolve for Names {
    fn user_frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &ip in ips {
            if ip >= 0x9000 {
                out.push(Frame {
                    function: "inlined_helper".into(),
                    offset: INLINED.into(),
                    ..self.frame(ip, "victim")
                });
            }
            out.push(self.frame(ip, "victim"));
        }
        out
    }

    fn kernel_frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        ips.iter().map(|&ip| self.frame(ip, "[kernel]")).collect()
    }
}

const NAMES: [&str; 9] = [
    "_start",
    "main",
    "level1",
    "level2",
    "hot_deep",
    "hot_shallow",
    "recurse",
    "start_thread",
    "sys_write",
];

fn names() -> Names {
    Names(NAMES.to_vec())
}

/// A stack of the functions named (innermost first), as addresses.
fn stack(functions: &[&str]) -> Vec<u64> {
    functions
        .iter()
        .map(|f| 0x1000 * NAMES.iter().position(|n| n == f).unwrap() as u64 + 0x10)
        .collect()
}

struct Fixture {
    samples: Vec<(SampleKey, u64)>,
    stacks: HashMap<u64, Vec<u64>>,
    threads: HashMap<u32, String>,
    counts: [u64; count::SLOTS as usize],
}

impl Fixture {
    fn new() -> Self {
        Self {
            samples: Vec::new(),
            stacks: HashMap::new(),
            threads: HashMap::from([(10, "worker".into()), (11, "other".into())]),
            counts: [0; count::SLOTS as usize],
        }
    }

    fn add(&mut self, tid: u32, how: u32, user: &[&str], kernel: &[&str], n: u64) {
        let mut hash = |ips: Vec<u64>| {
            if ips.is_empty() {
                return 0;
            }
            let h = cpu_stack_hash(&ips);
            self.stacks.insert(h, ips);
            h
        };
        let key = SampleKey {
            tid,
            how,
            user: hash(stack(user)),
            kernel: hash(stack(kernel)),
            python: 0,
        };
        self.samples.push((key, n));
    }

    fn run(&self) -> (Vec<Stacked>, CpuSection) {
        let input = Input {
            samples: &self.samples,
            stacks: &self.stacks,
            thread_names: &self.threads,
            counts: &self.counts,
            frequency: 99,
        };
        let stacked = symbolize(&input, &mut names());
        let section = section(&stacked, &input);
        (stacked, section)
    }
}

fn share<'a>(list: &'a [FunctionShare], function: &str) -> &'a FunctionShare {
    list.iter()
        .find(|f| f.function == function)
        .unwrap_or_else(|| panic!("no {function} in {list:#?}"))
}

#[test]
fn shares_by_self_and_total() {
    let mut f = Fixture::new();
    let deep = ["hot_deep", "level2", "level1", "main", "_start"];
    f.add(10, end::OUTERMOST, &deep, &[], 70);
    let shallow = ["hot_shallow", "level1", "main", "_start"];
    f.add(10, end::OUTERMOST, &shallow, &[], 30);
    let (stacked, s) = f.run();
    assert_eq!(s.samples, 100);
    assert_eq!(s.frequency, 99);
    assert_eq!(s.complete_stacks_percent, 100.0);
    assert_eq!(share(&s.top_self, "hot_deep").percent, 70.0);
    assert_eq!(share(&s.top_self, "hot_shallow").samples, 30);
    assert_eq!(share(&s.top_total, "main").percent, 100.0);
    assert_eq!(share(&s.top_total, "level2").samples, 70);
    assert_eq!(s.top_self[0].function, "hot_deep");
    assert_eq!(s.threads.len(), 1);
    assert_eq!(
        (s.threads[0].name.as_str(), s.threads[0].samples),
        ("worker", 100)
    );
    // Most samples first, the frames innermost first.
    assert_eq!(stacked[0].frames[0].frame.function, "hot_deep");
    assert_eq!(stacked[0].frames[4].frame.function, "_start");
    assert_eq!(stacked[0].frames[0].address, 0x4010);
}

#[test]
fn kernel_frames_come_first_and_are_the_self_function() {
    let mut f = Fixture::new();
    f.add(
        10,
        end::OUTERMOST,
        &["level1", "main", "_start"],
        &["sys_write"],
        5,
    );
    let (stacked, s) = f.run();
    let first = &stacked[0].frames[0];
    assert!(first.kernel);
    assert_eq!(first.frame.module, "[kernel]");
    assert_eq!(s.top_self[0].function, "sys_write");
    assert_eq!(share(&s.top_total, "level1").samples, 5);
}

#[test]
fn a_stack_is_complete_at_the_outermost_frame_or_a_start_routine() {
    let mut f = Fixture::new();
    // A frame-pointer chain that ends in start_thread: complete.
    f.add(
        11,
        end::ZERO | (flag::FP_NO_TABLE << 8),
        &["hot_deep", "start_thread"],
        &[],
        6,
    );
    // One that ends elsewhere: incomplete, and counted by why.
    f.add(11, end::ZERO, &["hot_deep", "level2"], &[], 1);
    f.add(10, end::NO_TABLE, &["hot_deep"], &[], 2);
    f.add(10, end::DEPTH, &["recurse", "recurse"], &[], 3);
    f.add(10, end::READ_FAILED, &["level1"], &[], 4);
    f.add(10, end::OUTERMOST, &["main", "_start"], &[], 4);
    let (_, s) = f.run();
    assert_eq!(s.samples, 20);
    assert_eq!(s.complete_stacks_percent, 50.0);
    let failures = &s.unwind_failures;
    assert_eq!(failures.frame_pointer_end, 1);
    assert_eq!(failures.no_table, 2);
    assert_eq!(failures.depth_cut, 3);
    assert_eq!(failures.stack_read_failed, 4);
    assert_eq!(failures.unsupported_rule, 0);
}

#[test]
fn recursion_counts_once_in_total() {
    let mut f = Fixture::new();
    f.add(
        10,
        end::OUTERMOST,
        &["recurse", "recurse", "recurse", "main", "_start"],
        &[],
        8,
    );
    let (_, s) = f.run();
    assert_eq!(share(&s.top_total, "recurse").samples, 8);
    assert_eq!(share(&s.top_total, "recurse").percent, 100.0);
}

#[test]
fn counts_become_frame_counts_and_losses() {
    let mut f = Fixture::new();
    f.counts[count::FRAMES_TABLE as usize] = 500;
    f.counts[count::FP_NO_TABLE as usize] = 7;
    f.counts[count::SIGNAL_FRAMES as usize] = 2;
    f.counts[count::STACK_MAP_FULL as usize] = 3;
    let (_, s) = f.run();
    assert_eq!(s.frames.by_table, 500);
    assert_eq!(s.frames.by_frame_pointer_no_table, 7);
    assert_eq!(s.frames.signal_frames, 2);
    assert_eq!(s.unwind_failures.stack_map_full, 3);
    assert_eq!(s.samples, 0);
    assert_eq!(s.complete_stacks_percent, 0.0);
}

#[test]
fn inlined_frames_share_their_address() {
    let mut f = Fixture::new();
    // 0x9010 is not a named function: `??`, with an inlined helper inside it.
    f.samples.push((
        SampleKey {
            tid: 10,
            how: end::OUTERMOST,
            user: {
                let ips = vec![0x9010, 0x1010, 0x0010];
                let h = cpu_stack_hash(&ips);
                f.stacks.insert(h, ips);
                h
            },
            kernel: 0,
            python: 0,
        },
        1,
    ));
    let (stacked, _) = f.run();
    let frames: Vec<(&str, u64)> = stacked[0]
        .frames
        .iter()
        .map(|f| (f.frame.function.as_str(), f.address))
        .collect();
    assert_eq!(
        frames,
        [
            ("inlined_helper", 0x9010),
            ("??", 0x9010),
            ("main", 0x1010),
            ("_start", 0x0010)
        ]
    );
}

#[test]
fn usage_rates_peaks_and_trend() {
    // 50% of a core, then 100%, then 150%.
    let points = [
        (0.0, 0.0),
        (1.0, 0.5),
        (2.0, 1.0),
        (3.0, 2.0),
        (4.0, 3.0),
        (5.0, 4.5),
        (6.0, 6.0),
    ];
    let u = usage(&points);
    assert_eq!(u.current, 150.0);
    assert_eq!(u.peak, 150.0);
    assert_eq!(u.average, 100.0);
    assert_eq!(u.trend, "increasing");
    let flat: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 0.5 * i as f64)).collect();
    assert_eq!(usage(&flat).trend, "stable");
    let down: Vec<(f64, f64)> = [0.0, 1.0, 2.0, 2.5, 3.0, 3.1, 3.2]
        .iter()
        .enumerate()
        .map(|(i, &c)| (i as f64, c))
        .collect();
    assert_eq!(usage(&down).trend, "decreasing");
    assert_eq!(usage(&points[..2]).trend, "unknown");
    assert_eq!(usage(&[]).average, 0.0);
}
