use super::*;

fn tree() -> Process {
    let mut p = Process::new(true);
    p.target = 100;
    p.seen = vec![Seen {
        pid: 100,
        parent_pid: Some(1),
        command: vec!["python3".into(), "main.py".into()],
        exit_status: None,
        followed: true,
        forked_ns: None,
        exited_ns: None,
    }];
    p
}

/// A child's fork and exit are recorded and the session goes on; the target's exit ends it.
#[test]
fn a_child_exit_does_not_end_the_session() {
    let mut p = tree();
    // Pid 1 << 30 is above any pid_max: /proc has no such process, so the parent's command is
    // inherited (a fork without exec).
    let child = 1 << 30;
    let fork = Lifecycle::Fork {
        parent: 100,
        child,
        comm: "python3".into(),
        followed: true,
    };
    assert_eq!(p.apply(fork), Flow::Continue);
    let exit = Lifecycle::ProcessExit {
        pid: child,
        status: Some(1 << 8),
    };
    assert_eq!(p.apply(exit), Flow::Continue);
    assert_eq!(p.seen.len(), 2);
    assert_eq!(p.seen[1].pid, child);
    assert_eq!(p.seen[1].parent_pid, Some(100));
    assert_eq!(p.seen[1].command, ["python3", "main.py"]);
    assert_eq!(p.seen[1].exit_status, Some(1 << 8));
    assert!(p.seen[1].followed);
    let target_exit = Lifecycle::ProcessExit {
        pid: 100,
        status: Some(0),
    };
    assert_eq!(p.apply(target_exit), Flow::TargetExited(Some(0)));
}

/// An exec whose command line cannot be read keeps the new name; a grandchild's parent is the
/// child; a child the kernel could not follow says so.
#[test]
fn exec_and_grandchildren() {
    let mut p = tree();
    let (child, grandchild) = (1 << 30, (1 << 30) + 1);
    p.apply(Lifecycle::Fork {
        parent: 100,
        child,
        comm: "python3".into(),
        followed: true,
    });
    p.apply(Lifecycle::Exec {
        pid: child,
        comm: "sh".into(),
    });
    p.apply(Lifecycle::Fork {
        parent: child,
        child: grandchild,
        comm: "sh".into(),
        followed: false,
    });
    assert_eq!(p.seen[1].command, ["sh"]);
    assert_eq!(p.seen[2].parent_pid, Some(child));
    assert_eq!(p.seen[2].command, ["sh"]);
    assert!(!p.seen[2].followed);
}

/// A fork record names the parent (its header's tgid), the child, and whether the kernel
/// follows it; the command name stops at its NUL.
#[test]
fn decodes_a_fork_record() {
    use profiler_common::{
        event::EventHeader,
        process::{ProcessEvent, ProcessEventKind},
    };
    let mut comm = [0u8; 16];
    comm[..7].copy_from_slice(b"python3");
    let event = ProcessEvent {
        header: EventHeader {
            kind: EventKind::Process as u16,
            _pad: 0,
            tid: 101,
            timestamp_ns: 1,
            tgid: 100,
            _pad2: 0,
        },
        kind: ProcessEventKind::Fork as u8,
        _pad: [0; 3],
        exit_code: -1,
        child: 200,
        _pad2: 0,
        comm,
    };
    // SAFETY: a plain-old-data record viewed as its bytes, for its size.
    let bytes = unsafe {
        std::slice::from_raw_parts((&raw const event).cast::<u8>(), size_of::<ProcessEvent>())
    };
    assert_eq!(
        kernel::decode(bytes),
        Some(Lifecycle::Fork {
            parent: 100,
            child: 200,
            comm: "python3".into(),
            followed: false,
        })
    );
    assert_eq!(kernel::decode(&bytes[..8]), None);
}

/// A child's fork and exit times come from its records' headers, in seconds after the start.
#[test]
fn a_child_s_fork_and_exit_are_timed() {
    use profiler_common::{
        event::{EventHeader, EventKind},
        process::{ProcessEvent, ProcessEventKind},
    };
    let record = |kind: ProcessEventKind, ns: u64, exit_code: i32| ProcessEvent {
        header: EventHeader {
            kind: EventKind::Process as u16,
            _pad: 0,
            tid: 200,
            timestamp_ns: ns,
            tgid: if kind == ProcessEventKind::Fork {
                100
            } else {
                200
            },
            _pad2: 0,
        },
        kind: kind as u8,
        _pad: [0; 3],
        exit_code,
        child: 200,
        _pad2: 0,
        comm: [0; 16],
    };
    let mut p = tree();
    for event in [
        record(ProcessEventKind::Fork, 1_500_000_000, 0),
        record(ProcessEventKind::ProcessExit, 3_250_000_000, 0),
    ] {
        // SAFETY: a plain-old-data record viewed as its bytes, for its size.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const event).cast::<u8>(), size_of::<ProcessEvent>())
        };
        assert_eq!(p.on_event(EventKind::Process as u16, bytes), Flow::Continue);
    }
    let child = p.seen.iter().find(|s| s.pid == 200).expect("the child");
    assert_eq!(
        (child.forked_ns, child.exited_ns),
        (Some(1_500_000_000), Some(3_250_000_000))
    );
    assert_eq!(seconds_since(3_250_000_000, 1_000_000_000), 2.25);
    assert_eq!(seconds_since(5, 10), 0.0);
}
