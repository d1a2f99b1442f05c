//! The `profiler` binary: everything is in the library (`app` runs the commands).

fn main() -> std::process::ExitCode {
    profiler_user::main()
}
