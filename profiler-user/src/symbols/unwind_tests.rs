use std::{
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use super::*;
use crate::{
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    tracee::task::{BlockedSyscall, blocked_syscall},
};

const SYS_READ: i64 = 0;
const SYS_FUTEX: i64 = 202;
const SYS_CLOCK_NANOSLEEP: i64 = 230;

/// Waits (up to 10 s) until thread `tid` of `pid` sits in system call `nr`.
fn wait_for_syscall(pid: i32, tid: i32, nr: i64) -> BlockedSyscall {
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = blocked_syscall(pid, tid)
            && s.nr == nr
        {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "thread {tid} of {pid} never blocked in system call {nr}: {:?}",
            blocked_syscall(pid, tid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The function names of a stack, the return addresses looked up at their call.
fn names(pid: i32, frames: &[u64]) -> Vec<String> {
    let mut maps = MappingSnapshot::default();
    maps.refresh(pid);
    let mut symbolizer = AddrSymbolizer::new();
    frames
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            let addr = if i == 0 { addr } else { addr - 1 };
            let frame = symbolizer.frame(&maps, addr);
            format!("{} ({})", frame.function, frame.module)
        })
        .collect()
}

/// Takes `lock` (held by the test, so it waits in futex); not inlined, so that the unwound
/// stack has a frame of this name.
#[inline(never)]
fn wait_for_lock(lock: &Mutex<u64>, tid: &mpsc::Sender<i32>) -> u64 {
    // SAFETY: gettid has no preconditions.
    tid.send(unsafe { libc::gettid() }).unwrap();
    let value = *lock.lock().unwrap();
    std::hint::black_box(value)
}

#[test]
fn unwinds_a_thread_waiting_for_a_mutex_through_libc_and_std() {
    let lock = Mutex::new(7u64);
    let held = lock.lock().unwrap();
    let pid = std::process::id() as i32;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let lock = &lock;
        let waiter = scope.spawn(move || wait_for_lock(lock, &tx));
        let tid = rx.recv().unwrap();
        let blocked = wait_for_syscall(pid, tid, SYS_FUTEX);
        let lock_addr = lock as *const Mutex<u64> as u64;
        let futex = blocked.args[0];
        let frames = Unwinder::new().unwind(pid, blocked.pc, blocked.sp, 64);
        let names = names(pid, &frames);
        drop(held);
        assert_eq!(waiter.join().unwrap(), 7);
        assert!(
            (lock_addr..lock_addr + size_of::<Mutex<u64>>() as u64).contains(&futex),
            "futex {futex:#x} outside the mutex at {lock_addr:#x}"
        );
        assert!(
            names.iter().any(|n| n.contains("wait_for_lock")),
            "no wait_for_lock frame in {names:#?}"
        );
    });
}

/// The pipe [`block_in_handler`] reads from.
static HANDLER_PIPE: AtomicI32 = AtomicI32::new(-1);

/// A signal handler that blocks (in `read`) until the test writes to the pipe, so that the
/// stack to unwind runs through glibc's signal trampoline, whose rules are DWARF expressions.
extern "C" fn block_in_handler(_: libc::c_int) {
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a local; the fd is the test's pipe, open until the
    // handler has returned.
    unsafe {
        libc::read(
            HANDLER_PIPE.load(Ordering::SeqCst),
            (&raw mut byte).cast(),
            1,
        )
    };
}

/// Sleeps until `stop`; not inlined, so that the stack under the signal frame has this name.
#[inline(never)]
fn sleep_until(stop: &AtomicBool, tid: &mpsc::Sender<i32>) {
    // SAFETY: gettid has no preconditions.
    tid.send(unsafe { libc::gettid() }).unwrap();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unwinds_through_a_signal_frame() {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    HANDLER_PIPE.store(fds[0], Ordering::SeqCst);
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is an
    // `extern "C" fn(c_int)`, as sa_sigaction without SA_SIGINFO expects, and only makes a
    // system call. No other test of this binary uses SIGUSR1; the old action is put back.
    let old = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = block_in_handler as *const () as libc::sighandler_t;
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, &mut old), 0);
        old
    };
    let pid = std::process::id() as i32;
    let stop = AtomicBool::new(false);
    let names = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let stop = &stop;
        let sleeper = scope.spawn(move || sleep_until(stop, &tx));
        let tid = rx.recv().unwrap();
        // SAFETY: signals a thread of our own process that has the handler installed.
        assert_eq!(unsafe { libc::tgkill(pid, tid, libc::SIGUSR1) }, 0);
        let blocked = wait_for_syscall(pid, tid, SYS_READ);
        let frames = Unwinder::new().unwind(pid, blocked.pc, blocked.sp, 64);
        let names = names(pid, &frames);
        // SAFETY: writes one byte from a local to the pipe's write end, which is open.
        assert_eq!(unsafe { libc::write(fds[1], [0u8].as_ptr().cast(), 1) }, 1);
        stop.store(true, Ordering::SeqCst);
        sleeper.join().unwrap();
        names
    });
    // SAFETY: puts back the action saved above; the descriptors are ours and no longer read.
    unsafe {
        libc::sigaction(libc::SIGUSR1, &old, std::ptr::null_mut());
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let at = |name: &str| names.iter().position(|n| n.contains(name));
    let handler = at("block_in_handler").unwrap_or_else(|| panic!("no handler in {names:#?}"));
    let sleeper = at("sleep_until").unwrap_or_else(|| panic!("no sleeper in {names:#?}"));
    assert!(handler < sleeper, "{names:#?}");
}

/// Kills and reaps the child when dropped, so that a failed assertion leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unwinds_another_process_down_to_libc_start() {
    let child = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = child.0.id() as i32;
    let blocked = wait_for_syscall(pid, pid, SYS_CLOCK_NANOSLEEP);
    let frames = Unwinder::new().unwind(pid, blocked.pc, blocked.sp, 64);
    let names = names(pid, &frames);
    assert!(frames.len() >= 3, "{names:#?}");
    assert!(
        names.iter().any(|n| n.contains("__libc_start")),
        "no __libc_start_* frame in {names:#?}"
    );
}

#[test]
fn stops_at_an_unmapped_pc_and_at_zero() {
    let pid = std::process::id() as i32;
    let mut unwinder = Unwinder::new();
    assert_eq!(unwinder.unwind(pid, 0, 0x1000, 8), Vec::<u64>::new());
    // Page zero is never mapped: the pc is reported and nothing more.
    assert_eq!(unwinder.unwind(pid, 0x10, 0x1000, 8), vec![0x10]);
    assert_eq!(unwinder.unwind(pid, 0x10, 0x1000, 0), Vec::<u64>::new());
}

#[test]
fn file_addresses_remove_the_load_bias_and_the_segment_shift() {
    // lld places the text segment one page above its file offset.
    let tables = Tables {
        segments: vec![
            Segment {
                file_offset: 0,
                file_size: 0x1000,
                vaddr: 0,
            },
            Segment {
                file_offset: 0x1000,
                file_size: 0x5000,
                vaddr: 0x2000,
            },
        ],
        eh_frame: Vec::new(),
        eh_frame_addr: 0,
        eh_frame_hdr: None,
        text_addr: 0,
    };
    let region = Region {
        start: 0x5555_0000_1000,
        end: 0x5555_0000_6000,
        file_offset: 0x1000,
        executable: true,
        dev: "fe:01".into(),
        inode: 1,
        path: "/bin/x".into(),
    };
    assert_eq!(tables.vaddr(&region, 0x5555_0000_1234), Some(0x2234));
    assert_eq!(tables.vaddr(&region, 0x5555_0000_0fff), None);
}

#[test]
fn reads_the_vdso_tables_from_memory() {
    let pid = std::process::id() as i32;
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let Some(vdso) = parse_regions(&maps)
        .into_iter()
        .find(|r| r.path == "[vdso]")
    else {
        eprintln!("skipped: no [vdso] mapped (vdso=0 on the kernel command line?)");
        return;
    };
    let tables = load(pid, &vdso).expect("the vdso has .eh_frame");
    assert!(!tables.eh_frame.is_empty());
    assert!(tables.vaddr(&vdso, vdso.start).is_some());
}
