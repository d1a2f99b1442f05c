//! The built-in matchers where patterns overlap or once caught too much: precedence by
//! priority, INVALID_INPUT's evidence, NETWORK_TIMEOUT's scope, compiled models.

use super::*;
use crate::linux;
use tests::{db, exception_event, id, syscall, text_event};

/// The built-in file with its patterns in reverse order.
fn reversed_builtin() -> String {
    let mut parts: Vec<&str> = BUILTIN_SOURCE.split("\n[[pattern]]\n").collect();
    let header = parts.remove(0);
    parts.reverse();
    let mut out = header.to_string();
    for p in parts {
        out.push_str("\n[[pattern]]\n");
        out.push_str(p);
        out.push('\n');
    }
    out
}

/// Events that more than one built-in pattern matches, with the pattern that must win.
fn overlaps() -> Vec<(&'static str, Subject<'static>, Option<&'static str>)> {
    let open = |path| Subject {
        syscall: Some("openat"),
        errno: Some(2),
        path: Some(path),
        syscall_failure: true,
        ..Subject::default()
    };
    vec![
        (
            "CUDA OOM, not the generic CUDA error",
            text_event(
                "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
            ),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "CUDA OOM outside the caching allocator",
            text_event(
                "RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
            ),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "CUDA OOM from the driver API",
            text_event("CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "the CUDA error, not the assertion it printed",
            text_event(
                "Indexing.cu:1146: block: [0,0,0] Assertion `srcIndex < srcSelectDimSize` failed.\nRuntimeError: CUDA error: device-side assert triggered",
            ),
            Some("CUDA_ERROR"),
        ),
        (
            "the OOM kill, not the SIGKILL",
            Subject {
                signal: Some(9),
                oom: true,
                ..Subject::default()
            },
            Some("OOM_KILL"),
        ),
        (
            "host OOM, not the uncaught C++ exception",
            exception_event(
                "std::bad_alloc",
                "terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc",
            ),
            Some("HOST_OUT_OF_MEMORY"),
        ),
        (
            "the uncaught C++ exception, not the assertion in its message",
            exception_event(
                "c10::Error",
                "terminate called after throwing an instance of 'c10::Error'\n  what():  Assertion `t.defined()` failed",
            ),
            Some("CPP_UNCAUGHT_EXCEPTION"),
        ),
        (
            "the Go panic, not the segfault it reports",
            text_event(
                "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4]",
            ),
            Some("GO_PANIC"),
        ),
        (
            "double free, not generic heap corruption",
            text_event(
                "*** Error in `python3': double free or corruption (fasttop): 0x000055d5c8a0e2a0 ***",
            ),
            Some("DOUBLE_FREE"),
        ),
        (
            "the missing native library, not the import error",
            exception_event(
                "ImportError",
                "ImportError: libcudart.so.12: cannot open shared object file: No such file or directory",
            ),
            Some("MISSING_SHARED_LIBRARY"),
        ),
        (
            "a loader error, not invalid input",
            exception_event(
                "ValueError",
                "ValueError: Unrecognized model in ./bert. Should have a `model_type` key in its config.json",
            ),
            Some("MODEL_LOAD_ERROR"),
        ),
        (
            "the exception inside the request handler, not the handler",
            exception_event(
                "ValueError",
                "ERROR:    Exception in ASGI application\nValueError: bad shape",
            ),
            Some("INVALID_INPUT"),
        ),
        (
            "a shape error inside the request handler",
            exception_event(
                "RuntimeError",
                "ERROR:    Exception in ASGI application\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (4x10 and 20x5)",
            ),
            Some("INVALID_INPUT"),
        ),
        (
            "a hub repository that does not exist, not an authentication failure",
            exception_event(
                "RepositoryNotFoundError",
                "huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. Repository Not Found for url: https://huggingface.co/api/models/x/y.",
            ),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "an NCCL collective timeout is NCCL's",
            text_event(
                "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.",
            ),
            Some("NCCL_ERROR"),
        ),
        (
            "a subprocess timeout whose command line mentions a socket",
            exception_event(
                "subprocess.TimeoutExpired",
                "subprocess.TimeoutExpired: Command '['python3', 'read_socket.py']' timed out after 0.5 seconds",
            ),
            Some("SUBPROCESS_TIMEOUT"),
        ),
        (
            "a lock wait on a socket's lock file",
            exception_event(
                "filelock._error.Timeout",
                "filelock._error.Timeout: The file lock '/run/app/socket.lock' could not be acquired (connection timed out)",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            "a gunicorn worker timeout is not a network timeout",
            Subject {
                text: "[2024-01-01 00:00:00 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:12)",
                level: Some(Level::Critical),
                ..Subject::default()
            },
            Some("WORKER_TIMEOUT"),
        ),
        (
            "a model file under a library directory is still missing",
            open("/usr/local/lib/ml/resnet50.onnx"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "a compiled model missing from a models directory, not a shared object search",
            open("/srv/models/resnet50/deploy_lib.so"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "a library directory probe",
            open("/usr/local/lib/ml/libfoo.conf"),
            Some("BENIGN_LIBRARY_DIR"),
        ),
        (
            "a virtualenv probe under a models directory is expected",
            open("/srv/models/app/.venv/pyvenv.cfg"),
            Some("BENIGN_SYSTEM_PROBE"),
        ),
        (
            "a byte-code cache probe under a models directory is expected",
            open("/srv/models/app/__pycache__/serve.cpython-312.pyc"),
            Some("BENIGN_SYSTEM_PROBE"),
        ),
        (
            "an IPv6 attempt before IPv4 is expected, not an unreachable network",
            Subject {
                syscall: Some("connect"),
                errno: linux::errno_value("ENETUNREACH"),
                path: Some("[2001:db8::1]:443"),
                syscall_failure: true,
                ..Subject::default()
            },
            Some("BENIGN_IPV6_FALLBACK"),
        ),
        (
            "the loader's hwcaps probes under a models directory are expected",
            open(
                "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/glibc-hwcaps/x86-64-v3/libc10.so",
            ),
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
    ]
}

/// Precedence is in the data: with the built-in file's patterns in reverse order, every
/// overlap is still decided the same way.
#[test]
fn overlaps_are_decided_by_priority_not_file_order() {
    let db = db();
    let reversed = PatternDb::load_with(&reversed_builtin(), None).unwrap();
    assert_eq!(reversed.list().len(), db.list().len());
    let mut wrong = Vec::new();
    for (what, subject, want) in overlaps() {
        let got = id(&db, &subject);
        let got_reversed = id(&reversed, &subject);
        if got.as_deref() != want || got_reversed.as_deref() != want {
            wrong.push(format!(
                "{what}: want {want:?}, got {got:?}, reversed file {got_reversed:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// INVALID_INPUT needs evidence about the input: a validation exception, a ValueError-like
/// exception whose message is about shapes, dtypes or inputs, or a known shape message. A
/// bare EINVAL, KeyError, AssertionError or TypeError is left to the fallback classifier.
#[test]
fn invalid_input_needs_input_evidence() {
    let db = db();
    let caught = [
        exception_event("ValueError", "ValueError: expected 3 dims, got (2, 2)"),
        exception_event(
            "ValueError",
            "ValueError: could not convert string to float: 'abc'",
        ),
        exception_event("ValueError", "ValueError: bad batch size -1"),
        exception_event(
            "ValueError",
            "ValueError: invalid literal for int() with base 10: 'x'",
        ),
        exception_event(
            "ValueError",
            "ValueError: Expected input batch_size (4) to match target batch_size (8).",
        ),
        exception_event(
            "ValueError",
            "ValueError: operands could not be broadcast together with shapes (3,) (4,)",
        ),
        exception_event("TypeError", "TypeError: expected dtype float32, got int64"),
        exception_event(
            "IndexError",
            "IndexError: index 5 is out of bounds for axis 0 with size 3",
        ),
        exception_event("IndexError", "IndexError: index out of range in self"),
        exception_event("AssertionError", "AssertionError: input shape mismatch"),
        exception_event("KeyError", "KeyError: 'input_ids'"),
        exception_event(
            "json.decoder.JSONDecodeError",
            "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        ),
        exception_event(
            "pydantic_core._pydantic_core.ValidationError",
            "1 validation error for Request",
        ),
        exception_event(
            "RequestValidationError",
            "RequestValidationError: body -> prompt",
        ),
        exception_event(
            "tensorflow.python.framework.errors_impl.InvalidArgumentError",
            "Incompatible shapes: [2,3] vs. [2,4]",
        ),
        exception_event(
            "java.lang.NumberFormatException",
            "java.lang.NumberFormatException: For input string: \"x\"",
        ),
        exception_event(
            "java.lang.IllegalArgumentException",
            "java.lang.IllegalArgumentException: invalid input shape [1, 3]",
        ),
        exception_event(
            "RuntimeError",
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x10 and 20x5)",
        ),
        exception_event(
            "RuntimeError",
            "RuntimeError: Invalid input: the prompt is empty",
        ),
        Subject {
            text: "2024-01-01 12:00:00 ERROR invalid input: prompt is empty",
            level: Some(Level::Error),
            ..Subject::default()
        },
        Subject {
            text: "ERROR 2024-01-01 KeyError: 'input_ids'",
            exception: Some("KeyError"),
            level: Some(Level::Error),
            ..Subject::default()
        },
    ];
    let mut wrong = Vec::new();
    for s in caught {
        let got = id(&db, &s);
        if got.as_deref() != Some("INVALID_INPUT") {
            wrong.push(format!("missed {:?}: {got:?}", s.text));
        }
    }
    let not_input: [(Subject, Option<&str>); 13] = [
        (syscall("ioctl", "EINVAL", None), None),
        (syscall("mmap", "EINVAL", None), None),
        (
            Subject {
                text: "OSError: [Errno 22] Invalid argument: 'x'",
                exception: Some("OSError"),
                errno: Some(22),
                ..Subject::default()
            },
            None,
        ),
        (exception_event("KeyError", "KeyError: 'llama'"), None),
        (exception_event("KeyError", "KeyError: 'model_type'"), None),
        (
            exception_event(
                "AssertionError",
                "AssertionError: Torch not compiled with CUDA enabled",
            ),
            None,
        ),
        (exception_event("AssertionError", "AssertionError"), None),
        (
            exception_event(
                "TypeError",
                "TypeError: 'NoneType' object is not subscriptable",
            ),
            None,
        ),
        (
            exception_event(
                "ValueError",
                "ValueError: too many values to unpack (expected 2)",
            ),
            None,
        ),
        (
            exception_event("IndexError", "IndexError: list index out of range"),
            None,
        ),
        (
            exception_event(
                "UnicodeEncodeError",
                "UnicodeEncodeError: 'ascii' codec can't encode character '\\xe9' in position 3",
            ),
            None,
        ),
        (
            exception_event(
                "std::out_of_range",
                "terminate called after throwing an instance of 'std::out_of_range'\n  what():  vector::_M_range_check: __n (which is 3) >= this->size() (which is 3)",
            ),
            Some("CPP_UNCAUGHT_EXCEPTION"),
        ),
        (
            Subject {
                text: "skipping invalid input row 3",
                ..Subject::default()
            },
            None,
        ),
    ];
    for (s, want) in not_input {
        let got = id(&db, &s);
        if got.as_deref() != want {
            wrong.push(format!(
                "{:?} {:?} {:?}: want {want:?}, got {got:?}",
                s.syscall, s.exception, s.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// NETWORK_TIMEOUT is about the network: sockets, HTTP clients, RPC deadlines. A subprocess
/// or lock timeout has its own pattern; a timeout that says nothing about what timed out
/// (asyncio's bare TimeoutError, a job's own timeout) is left to the fallback classifier.
#[test]
fn network_timeouts_are_network_ones() {
    let db = db();
    let network = [
        syscall("recvfrom", "ETIMEDOUT", None),
        syscall("connect", "ETIMEDOUT", Some("10.0.0.1:443")),
        exception_event("socket.timeout", "socket.timeout: timed out"),
        exception_event("TimeoutError", "TimeoutError: timed out"),
        Subject {
            errno: Some(110),
            ..exception_event(
                "TimeoutError",
                "TimeoutError: [Errno 110] Connection timed out",
            )
        },
        exception_event("TimeoutError", "TimeoutError: The read operation timed out"),
        exception_event(
            "requests.exceptions.ConnectTimeout",
            "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /api/models/x (Caused by ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to huggingface.co timed out. (connect timeout=10)'))",
        ),
        exception_event(
            "requests.exceptions.ReadTimeout",
            "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='x', port=443): Read timed out. (read timeout=10)",
        ),
        exception_event("requests.exceptions.Timeout", "requests.exceptions.Timeout"),
        exception_event("urllib3.exceptions.ReadTimeoutError", "x"),
        exception_event("httpx.ConnectTimeout", "httpx.ConnectTimeout"),
        exception_event("httpx.PoolTimeout", "httpx.PoolTimeout"),
        exception_event(
            "aiohttp.client_exceptions.ServerTimeoutError",
            "aiohttp.client_exceptions.ServerTimeoutError: Timeout on reading data from socket",
        ),
        exception_event("aiohttp.client_exceptions.ConnectionTimeoutError", "x"),
        exception_event(
            "openai.APITimeoutError",
            "openai.APITimeoutError: Request timed out.",
        ),
        exception_event(
            "google.api_core.exceptions.DeadlineExceeded",
            "google.api_core.exceptions.DeadlineExceeded: 504 Deadline Exceeded",
        ),
        exception_event(
            "grpc._channel._InactiveRpcError",
            "grpc._channel._InactiveRpcError: <_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.DEADLINE_EXCEEDED\n\tdetails = \"Deadline Exceeded\"",
        ),
        exception_event(
            "java.net.SocketTimeoutException",
            "java.net.SocketTimeoutException: Read timed out",
        ),
        exception_event(
            "redis.exceptions.TimeoutError",
            "redis.exceptions.TimeoutError: Timeout reading from socket",
        ),
        exception_event(
            "urllib.error.URLError",
            "urllib.error.URLError: <urlopen error timed out>",
        ),
        text_event("Get \"https://example.com\": dial tcp 10.0.0.1:443: i/o timeout"),
        text_event("net/http: request canceled (Client.Timeout exceeded while awaiting headers)"),
        text_event("curl: (28) Connection timed out after 5001 milliseconds"),
        text_event("Error: connect ETIMEDOUT 10.0.0.1:443"),
    ];
    let mut wrong = Vec::new();
    for s in network {
        let got = id(&db, &s);
        if got.as_deref() != Some("NETWORK_TIMEOUT") {
            wrong.push(format!(
                "missed {:?} {:?} {:?}: {got:?}",
                s.syscall, s.exception, s.text
            ));
        }
    }
    let others: [(Subject, Option<&str>); 11] = [
        (
            exception_event(
                "subprocess.TimeoutExpired",
                "subprocess.TimeoutExpired: Command '['python3', 'read_socket.py']' timed out after 0.5 seconds",
            ),
            Some("SUBPROCESS_TIMEOUT"),
        ),
        (
            exception_event(
                "filelock._error.Timeout",
                "filelock._error.Timeout: The file lock '/root/.cache/huggingface/hub/.locks/x.lock' could not be acquired.",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event("filelock.Timeout", "filelock.Timeout"),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "TimeoutError",
                "TimeoutError: timed out acquiring the lock on /data/index",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "pymysql.err.OperationalError",
                "pymysql.err.OperationalError: (1205, 'Lock wait timeout exceeded; try restarting transaction')",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "sqlite3.OperationalError",
                "sqlite3.OperationalError: database is locked",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        // asyncio.wait_for() and asyncio.timeout() raise a bare TimeoutError: a lock, a queue
        // or a connection, nothing says which.
        (exception_event("TimeoutError", "TimeoutError"), None),
        (
            exception_event(
                "asyncio.exceptions.TimeoutError",
                "asyncio.exceptions.TimeoutError",
            ),
            None,
        ),
        (
            exception_event(
                "concurrent.futures._base.TimeoutError",
                "concurrent.futures._base.TimeoutError: 3 (of 4) futures unfinished",
            ),
            None,
        ),
        (
            text_event("Task build-index timed out after 300 seconds"),
            None,
        ),
        (
            text_event("Timed out waiting for lock"),
            Some("LOCK_TIMEOUT"),
        ),
    ];
    for (s, want) in others {
        let got = id(&db, &s);
        if got.as_deref() != want {
            wrong.push(format!(
                "{:?} {:?}: want {want:?}, got {got:?}",
                s.exception, s.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A compiled model (`model.so`, TVM's `deploy_lib.so`, AOTInductor) missing from a models
/// directory is MODEL_NOT_FOUND; the dynamic loader's own search (library names, hwcaps
/// subdirectories) stays benign wherever the search path points, models directories included.
#[test]
fn a_missing_compiled_model_is_not_a_library_search() {
    let db = db();
    let cases = [
        (
            "/srv/models/resnet50/deploy_lib.so",
            Some("MODEL_NOT_FOUND"),
        ),
        ("/opt/models/llama/model.so", Some("MODEL_NOT_FOUND")),
        (
            "/data/checkpoints/step-100/compiled.so",
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/libcudart.so.12",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/opt/models/lib/tls/x86_64/libfoo.so",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/glibc-hwcaps/x86-64-v3/libc10.so",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        ("/etc/ld.so.preload", Some("BENIGN_LIBRARY_SEARCH")),
        (
            "/opt/app/plugins/codec_h264.so",
            Some("BENIGN_SHARED_OBJECT_SEARCH"),
        ),
    ];
    let mut wrong = Vec::new();
    for (path, want) in cases {
        let got = id(&db, &syscall("openat", "ENOENT", Some(path)));
        if got.as_deref() != want {
            wrong.push(format!("{path}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
