//! The python family's ring-buffer records: the Python stacks the kernel walked, the code
//! objects it read, and the exceptions raised.

use profiler_common::python::{NOT_COPIED, PyCodeEvent, PyFrame, PyStackEvent, RaiseEvent};

use super::{MAX_RECORDS, Python, Record, code, code::Process, interp, interp::Found, kernel};

impl Python {
    pub(super) fn on_stack(&mut self, bytes: &[u8]) {
        if bytes.len() < size_of::<PyStackEvent>() {
            return;
        }
        // SAFETY: the record is a PyStackEvent (its kind says so) of the size checked above;
        // read unaligned from the ring buffer's bytes.
        let e: PyStackEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        self.learn(e.hash, kernel::frames(&e.stack));
    }

    /// A code object the kernel sent with its names (a string it could not copy, one not compact
    /// ASCII, is read from the target).
    pub(super) fn on_code(&mut self, bytes: &[u8]) {
        if bytes.len() < size_of::<PyCodeEvent>() {
            return;
        }
        // SAFETY: as in `on_stack`, for a PyCodeEvent.
        let e: PyCodeEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let Some(layout) = self.shared.lock().expect("python state").layout else {
            return;
        };
        let mem = Process(self.pid);
        let text = |len: u32, buf: &[u8], addr: u64| {
            if len == NOT_COPIED {
                code::read_str(&mem, &layout, addr)
            } else {
                Some(String::from_utf8_lossy(&buf[..(len as usize).min(buf.len())]).into_owned())
            }
        };
        let (Some(qualname), Some(filename)) = (
            text(e.name_len, &e.name, e.identity[0]),
            text(e.file_len, &e.file, e.identity[1]),
        ) else {
            return;
        };
        // A table longer than the kernel copies is read whole from the target where it can be,
        // else kept cut (the lines of the instructions past the cut are then unknown).
        let copied = (e.table_len != NOT_COPIED)
            .then(|| e.table[..(e.table_len as usize).min(e.table.len())].to_vec());
        let linetable = match copied {
            Some(t) if t.len() >= e.table_size as usize => t,
            copied => match code::read_bytes(&mem, e.identity[2]).or(copied) {
                Some(t) => t,
                None => return,
            },
        };
        let info = code::CodeInfo {
            qualname,
            filename,
            firstlineno: e.identity[3] as u32 as i32,
            linetable,
        };
        self.shared
            .lock()
            .expect("python state")
            .codes
            .remember(e.code, e.identity, info);
    }

    /// Keeps a stack and reads its code objects (those of a stack that comes before the
    /// interpreter is found in the target are read once it is).
    pub(super) fn learn(&mut self, hash: u64, frames: Vec<PyFrame>) {
        // A stack of a `run` target whose interpreter was probed from its file before it ran:
        // the target maps it by now, and its code objects may not live until the next tick
        // (a module's body is freed once it has run).
        if self.interp.is_none()
            && self.prepared.is_some()
            && let Found::Interpreter(found) = interp::find(self.pid)
        {
            self.found(*found);
        }
        let mut shared = self.shared.lock().expect("python state");
        let resolved = self.interp.as_ref().map(|interp| {
            shared.codes.resolve(
                &Process(self.pid),
                &interp.file.layout,
                interp.code_type,
                &frames,
            )
        });
        shared.stacks.insert(hash, (frames, resolved));
    }

    pub(super) fn on_raise(&mut self, bytes: &[u8]) {
        if bytes.len() < size_of::<RaiseEvent>() {
            return;
        }
        // SAFETY: as in `on_stack`, for a RaiseEvent.
        let e: RaiseEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = (e.len as usize).min(e.message.len());
        let text = &e.message[..len];
        let message = match e.message_kind {
            1 => Some(String::from_utf8_lossy(text).into_owned()),
            2 => Some(code::decode(text, 1)),
            3 => Some(code::decode(text, 2)),
            4 => Some(code::decode(text, 4)),
            _ if e.arg_type != 0 => Some(format!("<{}>", self.type_name(e.arg_type))),
            _ => None,
        };
        self.type_name(e.key.exc_type);
        if e.uncaught != 0 && e.key.stack == 0 {
            self.uncaught_elsewhere += 1;
        }
        if self.records.len() < MAX_RECORDS {
            self.records.push(Record {
                tid: e.header.tid,
                timestamp_ns: e.header.timestamp_ns,
                key: e.key,
                message: message.clone(),
                uncaught: e.uncaught != 0,
            });
        }
        let d = self.details.entry(e.key).or_default();
        if d.message.is_none() {
            d.message = message;
        }
        if e.uncaught != 0 {
            d.uncaught += 1;
        }
    }
}
