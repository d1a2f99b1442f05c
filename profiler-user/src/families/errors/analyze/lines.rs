//! Line reassembly: raw stdout/stderr bytes, split at arbitrary points and interleaved
//! between threads, become complete lines per (thread, fd).
//!
//! `\n`, `\r\n` and a bare `\r` (progress bars) end a line; a line longer than the cap keeps
//! its head and gets a `...[truncated N bytes]` marker; ANSI escape sequences and control
//! characters other than tab are removed; invalid UTF-8 is replaced.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use super::input::{CallContext, OutputChunk};

/// One complete output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub tid: u32,
    pub fd: u32,
    /// When the line's first byte was written.
    pub timestamp_ns: u64,
    pub text: String,
    /// Stack and traced function of the write that started the line.
    pub context: Option<Arc<CallContext>>,
}

#[derive(Default)]
struct Partial {
    /// The line so far; split off whole when the line ends, so its allocation is reused.
    buf: BytesMut,
    started: bool,
    started_ns: u64,
    dropped: usize,
    pending_cr: bool,
    context: Option<Arc<CallContext>>,
}

/// Reassembles lines for every (tid, fd) stream.
pub(crate) struct LineAssembler {
    max_line: usize,
    streams: HashMap<(u32, u32), Partial>,
}

impl LineAssembler {
    /// `max_line`: the most bytes kept of one line.
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(16),
            streams: HashMap::new(),
        }
    }

    /// Feeds one chunk; appends the lines it completes to `out`.
    pub(crate) fn push(&mut self, chunk: &OutputChunk, out: &mut Vec<Line>) {
        let ctx = (!chunk.stack.is_empty() || chunk.function.is_some()).then(|| {
            Arc::new(CallContext {
                stack: chunk.stack.clone(),
                function: chunk.function.clone(),
            })
        });
        let key = (chunk.tid, chunk.fd);
        let max = self.max_line;
        let p = self.streams.entry(key).or_default();
        let mut rest: &[u8] = &chunk.bytes;
        while let Some(&first) = rest.first() {
            if std::mem::take(&mut p.pending_cr) && first == b'\n' {
                rest = &rest[1..];
                continue;
            }
            // The run of bytes up to the next line end joins the line, up to the cap.
            let end = rest
                .iter()
                .position(|b| matches!(b, b'\n' | b'\r'))
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            if !run.is_empty() {
                if !p.started {
                    p.started = true;
                    p.started_ns = chunk.timestamp_ns;
                    p.context = ctx.clone();
                }
                let kept = max.saturating_sub(p.buf.len()).min(run.len());
                p.buf.extend_from_slice(&run[..kept]);
                p.dropped += run.len() - kept;
            }
            rest = tail;
            if let Some(&b) = rest.first() {
                out.push(emit(p, key, chunk.timestamp_ns));
                p.pending_cr = b == b'\r';
                rest = &rest[1..];
            }
        }
    }

    /// Ends every partial line (the target exited or profiling stopped), oldest first.
    pub(crate) fn flush(&mut self, out: &mut Vec<Line>) {
        let mut lines: Vec<Line> = self
            .streams
            .iter_mut()
            .filter(|(_, p)| p.started)
            .map(|(&key, p)| emit(p, key, p.started_ns))
            .collect();
        lines.sort_by_key(|l| (l.timestamp_ns, l.tid, l.fd));
        out.extend(lines);
        self.streams.clear();
    }
}

fn emit(p: &mut Partial, (tid, fd): (u32, u32), now_ns: u64) -> Line {
    let bytes = p.buf.split();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if p.dropped > 0 {
        // The cap may have cut a multi-byte character in two.
        while text.ends_with('\u{FFFD}') {
            text.pop();
        }
    }
    let mut text = strip_controls(&text);
    if p.dropped > 0 {
        text.push_str(&format!(" ...[truncated {} bytes]", p.dropped));
    }
    let line = Line {
        tid,
        fd,
        timestamp_ns: if p.started { p.started_ns } else { now_ns },
        text,
        context: p.context.take(),
    };
    p.started = false;
    p.dropped = 0;
    line
}

/// Removes ANSI escape sequences (CSI, OSC and two-byte escapes) and control characters
/// other than tab.
pub(crate) fn strip_controls(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // Operating system command: ends with BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(tid: u32, fd: u32, ts: u64, bytes: &[u8]) -> OutputChunk {
        OutputChunk {
            tid,
            timestamp_ns: ts,
            fd,
            bytes: bytes.to_vec(),
            ..Default::default()
        }
    }

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn partial_writes_and_crlf() {
        let mut a = LineAssembler::new(4096);
        let mut out = Vec::new();
        a.push(&chunk(1, 2, 10, b"hel"), &mut out);
        assert!(out.is_empty());
        a.push(&chunk(1, 2, 20, b"lo\r"), &mut out);
        a.push(&chunk(1, 2, 30, b"\nworld\n\nx"), &mut out);
        assert_eq!(texts(&out), ["hello", "world", ""]);
        assert_eq!(out[0].timestamp_ns, 10);
        assert_eq!(out[1].timestamp_ns, 30);
        a.flush(&mut out);
        assert_eq!(texts(&out), ["hello", "world", "", "x"]);
    }

    #[test]
    fn bare_carriage_return_ends_a_line() {
        let mut a = LineAssembler::new(4096);
        let mut out = Vec::new();
        a.push(&chunk(1, 2, 1, b" 10%\r 20%\r100%\n"), &mut out);
        assert_eq!(texts(&out), [" 10%", " 20%", "100%"]);
    }

    #[test]
    fn threads_and_fds_are_separate_streams() {
        let mut a = LineAssembler::new(4096);
        let mut out = Vec::new();
        a.push(&chunk(1, 2, 1, b"Trace"), &mut out);
        a.push(&chunk(2, 2, 2, b"other thread\n"), &mut out);
        a.push(&chunk(1, 1, 3, b"stdout line\n"), &mut out);
        a.push(&chunk(1, 2, 4, b"back\n"), &mut out);
        assert_eq!(texts(&out), ["other thread", "stdout line", "Traceback"]);
        assert_eq!((out[2].tid, out[2].fd, out[2].timestamp_ns), (1, 2, 1));
    }

    #[test]
    fn long_lines_are_truncated_on_a_char_boundary() {
        let mut a = LineAssembler::new(16);
        let mut out = Vec::new();
        let mut long = "abcdefghijklmno".as_bytes().to_vec();
        long.extend("éé".as_bytes()); // 15 + 4 bytes: the cap cuts the first é
        long.extend(b"tail\n");
        a.push(&chunk(1, 2, 1, &long), &mut out);
        assert_eq!(out[0].text, "abcdefghijklmno ...[truncated 7 bytes]");
        a.push(&chunk(1, 2, 2, b"next\n"), &mut out);
        assert_eq!(out[1].text, "next");
    }

    #[test]
    fn utf8_split_across_chunks_and_invalid_bytes() {
        let mut a = LineAssembler::new(4096);
        let mut out = Vec::new();
        let bytes = "né\n".as_bytes();
        a.push(&chunk(1, 2, 1, &bytes[..2]), &mut out);
        a.push(&chunk(1, 2, 2, &bytes[2..]), &mut out);
        a.push(&chunk(1, 2, 3, b"bad \xff byte\n"), &mut out);
        assert_eq!(texts(&out), ["né", "bad \u{FFFD} byte"]);
    }

    #[test]
    fn ansi_sequences_are_stripped() {
        assert_eq!(
            strip_controls("\x1b[31mERROR\x1b[0m x\x1b]0;title\x07 y\x08\tz"),
            "ERROR x y\tz"
        );
        assert_eq!(strip_controls("plain"), "plain");
    }

    #[test]
    fn context_comes_from_the_write_that_started_the_line() {
        let mut a = LineAssembler::new(4096);
        let mut out = Vec::new();
        let mut c = chunk(1, 2, 1, b"par");
        c.function = Some("handler".into());
        a.push(&c, &mut out);
        a.push(&chunk(1, 2, 2, b"t\n"), &mut out);
        let ctx = out[0].context.as_ref().unwrap();
        assert_eq!(ctx.function.as_deref(), Some("handler"));
    }
}
