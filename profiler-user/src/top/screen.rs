//! The terminal while the live view is up: raw mode and the alternate screen, the keys, and the
//! profiler's own stderr held back (a line written over the view would tear it) and printed
//! once the terminal is restored. The terminal is restored when the view closes, when the
//! profiler panics, and on every signal that ends profiling (they end the collection loop,
//! which closes the view).

use std::{
    io::{self, BufRead as _, Stdout},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    sync::{
        Arc, Mutex, Once,
        atomic::{AtomicI32, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event, KeyEvent, KeyEventKind},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

/// The real stderr while fd 2 is the pipe (-1 otherwise), for the panic hook.
static REAL_STDERR: AtomicI32 = AtomicI32::new(-1);

/// The lines the profiler wrote to stderr while the view was up.
type Held = Arc<Mutex<Vec<String>>>;

pub(crate) struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// The real stderr, while fd 2 is the pipe; and the thread reading the pipe.
    stderr: Option<(OwnedFd, JoinHandle<()>)>,
    held: Held,
}

/// Puts the terminal back as it was (idempotent: the panic hook and `Drop` may both run it).
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

impl Screen {
    /// Takes the terminal: raw mode, the alternate screen, no cursor.
    pub(crate) fn open() -> io::Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                // The message goes to the real stderr, not to the held lines.
                let real = REAL_STDERR.load(Ordering::SeqCst);
                if real >= 0 {
                    // SAFETY: dup2 of the saved stderr (open while the view is up) onto fd 2.
                    unsafe { libc::dup2(real, 2) };
                }
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide) {
            restore_terminal();
            return Err(e);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        let held = Held::default();
        let stderr = hold_stderr(&held).ok();
        Ok(Self {
            terminal,
            stderr,
            held,
        })
    }

    pub(crate) fn draw(&mut self, render: impl FnOnce(&mut ratatui::Frame<'_>)) {
        let _ = self.terminal.draw(render);
    }

    /// Forgets what is on the screen, so that the next draw paints every cell (a `run`
    /// command's own output lands on the same terminal).
    pub(crate) fn repaint(&mut self) {
        let _ = self.terminal.clear();
    }

    /// The keys pressed since the last call (none waits), whether the terminal was resized,
    /// and whether it is gone (hung up: the keys can end nothing more).
    pub(crate) fn keys(&mut self) -> (Vec<KeyEvent>, bool, bool) {
        let (mut keys, mut resized) = (Vec::new(), false);
        // crossterm reads stdin when it is a terminal. Looked at first: on a terminal that hung
        // up, crossterm's poll never returns; with nothing to read, it is not asked (a resize
        // shows at the next refresh, which draws at the new size).
        // SAFETY: isatty on fd 0 reads no memory of ours.
        if unsafe { libc::isatty(0) } == 1 {
            let mut fd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            let ready = unsafe { libc::poll(&mut fd, 1, 0) };
            if ready < 0 {
                return (keys, resized, false);
            }
            if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return (keys, resized, true);
            }
            if fd.revents & libc::POLLIN == 0 {
                return (keys, resized, false);
            }
        }
        while event::poll(Duration::ZERO).unwrap_or(false) {
            match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => keys.push(k),
                Ok(Event::Resize(..)) => resized = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (keys, resized, false)
    }

    /// The messages held back so far.
    pub(crate) fn messages(&self) -> Vec<String> {
        self.held.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
        if let Some((real, reader)) = self.stderr.take() {
            REAL_STDERR.store(-1, Ordering::SeqCst);
            // SAFETY: dup2 of an open fd onto fd 2: the pipe's write end closes, the reader sees
            // its end and stops.
            unsafe { libc::dup2(real.as_raw_fd(), 2) };
            let _ = reader.join();
        }
        if let Ok(lines) = self.held.lock() {
            for line in lines.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// Points fd 2 at a pipe whose lines a thread keeps in `held`; returns the real stderr.
fn hold_stderr(held: &Held) -> io::Result<(OwnedFd, JoinHandle<()>)> {
    let mut fds: [RawFd; 2] = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_DUPFD_CLOEXEC on fd 2 makes a new descriptor that nothing else owns.
    let real = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if real < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `real` was just made and is owned here alone.
    let real = unsafe { OwnedFd::from_raw_fd(real) };
    // SAFETY: dup2 onto fd 2 of an open descriptor; the profiler's stderr writes go to the pipe.
    if unsafe { libc::dup2(write.as_raw_fd(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(write);
    REAL_STDERR.store(real.as_raw_fd(), Ordering::SeqCst);
    let held = Arc::clone(held);
    let reader = std::thread::Builder::new()
        .name("stderr-hold".into())
        .spawn(move || {
            let lines = io::BufReader::new(std::fs::File::from(read)).lines();
            for line in lines.map_while(Result::ok) {
                if let Ok(mut held) = held.lock() {
                    held.push(line);
                }
            }
        });
    match reader {
        Ok(reader) => Ok((real, reader)),
        Err(e) => {
            REAL_STDERR.store(-1, Ordering::SeqCst);
            // SAFETY: as above: the real stderr goes back to fd 2.
            unsafe { libc::dup2(real.as_raw_fd(), 2) };
            Err(e)
        }
    }
}
