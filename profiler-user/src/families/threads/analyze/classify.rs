//! Telling a futex wait that is lock contention from one that is not. The kernel sees only a
//! `futex(2)` wait on an address; a condition variable or a parked thread waits there for an
//! event, not for a lock, and reporting it as contention would blame the wrong thing. The
//! waiting stack says which it is, by the functions near its top.
//!
//! The rule, over the innermost [`WINDOW`] frames:
//! - the innermost frame naming a lock, condition variable or parker decides when it names a
//!   lock: a condition variable relocking its mutex (`std`'s `Condvar::wait` calls
//!   `Mutex::lock_contended`, glibc's `pthread_cond_wait` calls `__lll_lock_wait`) is mutex
//!   contention;
//! - otherwise the outermost condition-variable or parker frame decides: a parker built on a
//!   condition variable (tokio's) is a park;
//! - `parking_lot_core`'s parking is how every `parking_lot` primitive waits, so it only says
//!   park when no `parking_lot` mutex, rwlock or condition variable frame is above it;
//! - a stack with none of these is a lock (the caller only asks about futex waits).

use crate::report::Frame;

/// What a futex wait was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitClass {
    /// Waiting for a lock another thread holds (contention).
    Lock,
    /// Waiting on a condition variable for a notification.
    Condvar,
    /// A parked thread (or a semaphore, a barrier, a join) waiting to be unparked.
    Park,
}

impl WaitClass {
    /// The report's `kind` of a [`WaitSite`](crate::report::threads::WaitSite).
    pub(crate) fn name(self) -> &'static str {
        match self {
            WaitClass::Lock => "lock",
            WaitClass::Condvar => "condvar",
            WaitClass::Park => "park",
        }
    }
}

/// Frames looked at, innermost first: enough for the layers between the syscall and the
/// primitive's public function (about eight for `parking_lot`'s condition variable) without
/// reaching the caller's own code.
pub(crate) const WINDOW: usize = 12;

/// Substrings of the functions of lock acquisition slow paths.
const LOCK: &[&str] = &[
    "pthread_mutex_lock",
    "pthread_mutex_timedlock",
    "pthread_mutex_clocklock",
    "pthread_mutex_cond_lock",
    "pthread_rwlock_",
    "__lll_lock_wait",
    "lock_contended",
    "read_contended",
    "write_contended",
    "std::sys::sync::mutex",
    "std::sys::sync::rwlock",
    "parking_lot::raw_mutex",
    "parking_lot::raw_rwlock",
    "parking_lot::raw_fair_mutex",
    "lock_api::",
];

/// Substrings of condition-variable waits.
const CONDVAR: &[&str] = &[
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "pthread_cond_clockwait",
    "std::sync::condvar",
    "std::sync::poison::condvar",
    "std::sys::sync::condvar",
    "Condvar::wait",
    "parking_lot::condvar",
];

/// Substrings of thread parking, semaphores, barriers and joins (waiting for an event, like a
/// condvar: `pthread_join` waits on the ended thread's id word).
const PARK: &[&str] = &[
    "pthread_barrier_wait",
    "Barrier::wait",
    "pthread_join",
    "pthread_clockjoin",
    "pthread_timedjoin",
    "pthread_tryjoin",
    "Thread::join",
    "JoinInner",
    "std::thread::park",
    "thread::Thread::park",
    "std::sys::sync::thread_parking",
    "thread_parking::",
    "tokio::runtime::park",
    "crossbeam_utils::sync::parker",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
];

/// `parking_lot_core`: shared by all `parking_lot` primitives (see the module doc).
const GENERIC_PARK: &[&str] = &["parking_lot_core::"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Generic,
    Class(WaitClass),
}

fn mark(function: &str) -> Option<Mark> {
    let has = |list: &[&str]| list.iter().any(|p| function.contains(p));
    // The generic park first: `parking_lot_core::thread_parker` would match "thread_parker".
    if has(GENERIC_PARK) {
        Some(Mark::Generic)
    } else if has(LOCK) {
        Some(Mark::Class(WaitClass::Lock))
    } else if has(CONDVAR) {
        Some(Mark::Class(WaitClass::Condvar))
    } else if has(PARK) {
        Some(Mark::Class(WaitClass::Park))
    } else {
        None
    }
}

/// Whether any frame of the window names a lock, condition variable or parker (a wait with
/// none is a lock wait only by default).
pub(crate) fn recognised(frames: &[Frame]) -> bool {
    frames
        .iter()
        .take(WINDOW)
        .any(|f| mark(&f.function).is_some())
}

/// What the futex wait at `frames` (innermost first) was; see the module doc for the rule.
pub(crate) fn classify_wait(frames: &[Frame]) -> WaitClass {
    let marks: Vec<Mark> = frames
        .iter()
        .take(WINDOW)
        .filter_map(|f| mark(&f.function))
        .collect();
    let classes = || {
        marks.iter().filter_map(|m| match m {
            Mark::Class(c) => Some(*c),
            Mark::Generic => None,
        })
    };
    match classes().next() {
        Some(WaitClass::Lock) => WaitClass::Lock,
        Some(_) => classes()
            .rfind(|c| *c != WaitClass::Lock)
            .unwrap_or(WaitClass::Lock),
        None if marks.contains(&Mark::Generic) => WaitClass::Park,
        None => WaitClass::Lock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(functions: &[&str]) -> Vec<Frame> {
        functions
            .iter()
            .map(|f| Frame {
                function: f.to_string(),
                module: "m".into(),
                offset: "0x0".into(),
                file: None,
                line: None,
            })
            .collect()
    }

    fn class(functions: &[&str]) -> WaitClass {
        classify_wait(&stack(functions))
    }

    #[test]
    fn glibc_condvar_and_mutex() {
        let wait = [
            "__futex_abstimed_wait_common",
            "__pthread_cond_wait_common",
            "___pthread_cond_wait",
            "worker",
        ];
        assert_eq!(class(&wait), WaitClass::Condvar);
        let timed = [
            "__futex_abstimed_wait_common",
            "___pthread_cond_timedwait64",
        ];
        assert_eq!(class(&timed), WaitClass::Condvar);
        // The condvar's wake-up relocking a contended mutex is contention.
        let relock = [
            "__lll_lock_wait",
            "__pthread_mutex_cond_lock",
            "__pthread_cond_wait_common",
            "___pthread_cond_wait",
        ];
        assert_eq!(class(&relock), WaitClass::Lock);
        let mutex = ["__lll_lock_wait", "___pthread_mutex_lock", "worker", "main"];
        assert_eq!(class(&mutex), WaitClass::Lock);
        assert_eq!(class(&["sem_wait", "consumer"]), WaitClass::Park);
        let join = [
            "__futex_abstimed_wait_common",
            "__pthread_clockjoin_ex",
            "main",
        ];
        assert_eq!(class(&join), WaitClass::Park);
        let barrier = [
            "__futex_abstimed_wait_common",
            "___pthread_barrier_wait",
            "worker",
        ];
        assert_eq!(class(&barrier), WaitClass::Park);
    }

    #[test]
    fn rust_std_condvar_park_and_mutex() {
        let wait = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
            "std::sync::poison::condvar::Condvar::wait",
            "app::consumer",
        ];
        assert_eq!(class(&wait), WaitClass::Condvar);
        let relock = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
            "std::sync::poison::condvar::Condvar::wait",
        ];
        assert_eq!(class(&relock), WaitClass::Lock);
        let park = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::thread_parking::futex::Parker::park",
            "std::thread::park",
            "std::sync::mpmc::context::Context::wait_until",
        ];
        assert_eq!(class(&park), WaitClass::Park);
        let mutex = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "app::work",
        ];
        assert_eq!(class(&mutex), WaitClass::Lock);
    }

    #[test]
    fn parking_lot_and_tokio() {
        let core = [
            "syscall",
            "parking_lot_core::thread_parker::imp::ThreadParker::futex_wait",
            "parking_lot_core::thread_parker::imp::ThreadParker::park",
            "parking_lot_core::parking_lot::park::{{closure}}",
            "parking_lot_core::parking_lot::with_thread_data",
            "parking_lot_core::parking_lot::park",
        ];
        let with = |top: &str| {
            let mut s = core.to_vec();
            s.push(top);
            class(&s)
        };
        assert_eq!(
            with("parking_lot::raw_mutex::RawMutex::lock_slow"),
            WaitClass::Lock
        );
        assert_eq!(
            with("parking_lot::condvar::Condvar::wait_until_internal"),
            WaitClass::Condvar
        );
        assert_eq!(with("app::idle"), WaitClass::Park);
        // tokio's parker waits on a std condvar: a park.
        let tokio = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
            "std::sync::poison::condvar::Condvar::wait",
            "tokio::runtime::park::Inner::park",
            "tokio::runtime::park::CachedParkThread::park",
        ];
        assert_eq!(class(&tokio), WaitClass::Park);
    }

    #[test]
    fn unknown_and_far_frames_are_locks() {
        assert_eq!(class(&[]), WaitClass::Lock);
        assert_eq!(class(&["??", "??", "main"]), WaitClass::Lock);
        // A condvar below the window is the caller's business, not this wait's.
        let mut deep = vec!["??"; WINDOW];
        deep.push("pthread_cond_wait");
        assert_eq!(class(&deep), WaitClass::Lock);
    }
}
