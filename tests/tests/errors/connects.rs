//! Non-blocking connects that fail: connect(2) returns EINPROGRESS, and the failure comes later
//! (the target reads it with `getsockopt(SO_ERROR)`). The kernel side follows the socket to its
//! end (`inet_sock_set_state`) and reports a failed `connect` with the address connect(2) was
//! given. Loopback only.

use std::path::{Path, PathBuf};

use profiler_tests::{Event, Report, TempDir, require_python, require_root};

use super::{run_script, write};

/// Python that binds a TCP socket to a free port of 127.0.0.1 without listening, so a connect
/// to it is refused, and writes the port to `port` in `dir`; then runs `body`, where `port`
/// is the port. Returns the script and the file that will hold the port.
fn refused_port_script(dir: &TempDir, body: &str) -> (PathBuf, PathBuf) {
    let port_file = dir.path().join("port");
    let script = write(
        dir,
        "connect.py",
        &format!(
            "import socket\nclosed = socket.socket()\nclosed.bind(('127.0.0.1', 0))\n\
             port = closed.getsockname()[1]\nopen({:?}, 'w').write(str(port))\n{body}",
            port_file.display().to_string()
        ),
    );
    (script, port_file)
}

/// The port a script wrote to `file`.
fn port(file: &Path) -> u16 {
    let text = std::fs::read_to_string(file).expect("the script wrote its port");
    text.trim().parse().expect("a port number")
}

/// The one failed `connect` of the report: the non-blocking connect to 127.0.0.1:`port` that
/// failed with `errno` after connect(2) returned EINPROGRESS. It is counted once with `errno`;
/// `in_progress` non-blocking connects of the run returned EINPROGRESS, that one included.
fn the_failed_connect<'a>(
    report: &'a Report,
    errno: &str,
    port: u16,
    in_progress: u64,
) -> Event<'a> {
    let errors = report.errors();
    let connects: Vec<Event<'a>> = errors
        .events()
        .into_iter()
        .filter(|e| e.source() == "syscall" && e.context("syscall") == Some("connect"))
        .collect();
    assert_eq!(
        connects.len(),
        1,
        "one failed connect:\n{}",
        errors.describe()
    );
    let e = connects[0];
    let address = format!("127.0.0.1:{port}");
    assert_eq!(e.error_type(), errno, "{e}");
    assert_eq!(e.context("errno"), Some(errno), "{e}");
    assert_eq!(e.context("arg"), Some(address.as_str()), "{e}");
    assert_eq!(e.category(), "network", "{e}");
    let text = match errno {
        "ECONNREFUSED" => "Connection refused",
        "ETIMEDOUT" => "Connection timed out",
        other => panic!("no text for {other}"),
    };
    assert_eq!(
        e.message(),
        format!("connect({address}) = -1 EINPROGRESS, then {errno} ({text})"),
        "{e}"
    );
    let mut connect_failures: Vec<(&str, u64)> = errors
        .syscall_failures()
        .into_iter()
        .filter(|(syscall, _, _)| *syscall == "connect")
        .map(|(_, errno, count)| (errno, count))
        .collect();
    connect_failures.sort();
    let mut expected = vec![("EINPROGRESS", in_progress), (errno, 1)];
    expected.sort();
    assert_eq!(connect_failures, expected);
    e
}

/// Runs Python `body` after [`refused_port_script`]'s prelude: the run's one failed connect is
/// the refused non-blocking connect to that port, and `in_progress` connects returned
/// EINPROGRESS.
fn refused_after_einprogress(body: &str, in_progress: u64) {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let (script, port_file) = refused_port_script(&dir, body);
    let report = run_script(&dir, &py, &script, &[], &[]);
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(0));
    let e = the_failed_connect(&report, "ECONNREFUSED", port(&port_file), in_progress);
    assert_eq!(e.pattern(), Some("CONNECTION_REFUSED"), "{e}");
}

/// A Python socket with a timeout is non-blocking underneath: its connect to a port nothing
/// listens on returns EINPROGRESS, and the refusal comes back through SO_ERROR. A connect of
/// the same kind that succeeds reports nothing; it returned EINPROGRESS too (on loopback the
/// handshake ends after connect(2) returns).
#[test]
fn a_socket_with_a_timeout_refused_is_econnrefused_with_the_address() {
    refused_after_einprogress(
        "srv = socket.socket()\nsrv.bind(('127.0.0.1', 0))\nsrv.listen(1)\n\
         ok = socket.socket()\nok.settimeout(2)\nok.connect(srv.getsockname())\n\
         s = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', port))\n\
         except ConnectionRefusedError:\n    pass\n",
        2,
    );
}

/// asyncio connects non-blocking sockets: `open_connection` to a port nothing listens on.
#[test]
fn asyncio_open_connection_refused_is_econnrefused_with_the_address() {
    refused_after_einprogress(
        "import asyncio\nasync def main():\n    try:\n        \
         await asyncio.open_connection('127.0.0.1', port)\n    \
         except ConnectionRefusedError:\n        pass\nasyncio.run(main())\n",
        1,
    );
}

/// A failure that comes well after connect(2) returned, from a kernel timer (softirq context,
/// in whatever task runs then): a listener whose accept queue is full drops the SYNs, and the
/// socket gives up after one retry (TCP_SYNCNT 1, TCP_USER_TIMEOUT 300 ms) with ETIMEDOUT.
#[test]
fn a_non_blocking_connect_that_times_out_in_the_kernel_is_a_network_timeout() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let port_file = dir.path().join("port");
    let script = write(
        &dir,
        "syn_timeout.py",
        &format!(
            "import errno, select, socket, sys\nsrv = socket.socket()\n\
             srv.bind(('127.0.0.1', 0))\nsrv.listen(0)\nport = srv.getsockname()[1]\n\
             open({:?}, 'w').write(str(port))\n\
             held = socket.create_connection(('127.0.0.1', port))\n\
             c = socket.socket()\nc.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)\n\
             c.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 300)\n\
             c.setblocking(False)\nassert c.connect_ex(('127.0.0.1', port)) == errno.EINPROGRESS\n\
             select.select([], [c], [], 30)\n\
             sys.exit(0 if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT \
             else 3)\n",
            port_file.display().to_string()
        ),
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    assert_eq!(
        report.at("/target/exit_status/code").as_i64(),
        Some(0),
        "the kernel did not time the connect out"
    );
    let e = the_failed_connect(&report, "ETIMEDOUT", port(&port_file), 1);
    assert_eq!(e.pattern(), Some("NETWORK_TIMEOUT"), "{e}");
    assert_eq!(e.severity(), "high", "{e}");
}
