//! x86-64 system call numbers that the kernel programs compare against (the profiler runs on
//! x86-64 only). Checked against the `syscalls` crate by this module's tests.

pub const WRITE: u64 = 1;
pub const OPEN: u64 = 2;
pub const STAT: u64 = 4;
pub const LSTAT: u64 = 6;
pub const WRITEV: u64 = 20;
pub const ACCESS: u64 = 21;
pub const CONNECT: u64 = 42;
pub const BIND: u64 = 49;
pub const EXECVE: u64 = 59;
pub const TRUNCATE: u64 = 76;
pub const CHDIR: u64 = 80;
pub const RENAME: u64 = 82;
pub const MKDIR: u64 = 83;
pub const RMDIR: u64 = 84;
pub const CREAT: u64 = 85;
pub const LINK: u64 = 86;
pub const UNLINK: u64 = 87;
pub const READLINK: u64 = 89;
pub const CHMOD: u64 = 90;
pub const CHOWN: u64 = 92;
pub const OPENAT: u64 = 257;
pub const MKDIRAT: u64 = 258;
pub const NEWFSTATAT: u64 = 262;
pub const UNLINKAT: u64 = 263;
pub const READLINKAT: u64 = 267;
pub const FACCESSAT: u64 = 269;
pub const EXECVEAT: u64 = 322;
pub const STATX: u64 = 332;
/// `uretprobe(2)`: how the kernel itself returns from a uretprobe (one with every traced call).
pub const URETPROBE: u64 = 335;
/// `uprobe(2)`: how the kernel enters an optimised uprobe.
pub const UPROBE: u64 = 336;
pub const OPENAT2: u64 = 437;
pub const FACCESSAT2: u64 = 439;

#[cfg(test)]
mod tests {
    use super::*;
    use ::syscalls::x86_64::Sysno;

    #[test]
    fn numbers_are_the_x86_64_ones() {
        let table = [
            (WRITE, Sysno::write),
            (OPEN, Sysno::open),
            (STAT, Sysno::stat),
            (LSTAT, Sysno::lstat),
            (WRITEV, Sysno::writev),
            (ACCESS, Sysno::access),
            (CONNECT, Sysno::connect),
            (BIND, Sysno::bind),
            (EXECVE, Sysno::execve),
            (TRUNCATE, Sysno::truncate),
            (CHDIR, Sysno::chdir),
            (RENAME, Sysno::rename),
            (MKDIR, Sysno::mkdir),
            (RMDIR, Sysno::rmdir),
            (CREAT, Sysno::creat),
            (LINK, Sysno::link),
            (UNLINK, Sysno::unlink),
            (READLINK, Sysno::readlink),
            (CHMOD, Sysno::chmod),
            (CHOWN, Sysno::chown),
            (OPENAT, Sysno::openat),
            (MKDIRAT, Sysno::mkdirat),
            (NEWFSTATAT, Sysno::newfstatat),
            (UNLINKAT, Sysno::unlinkat),
            (READLINKAT, Sysno::readlinkat),
            (FACCESSAT, Sysno::faccessat),
            (EXECVEAT, Sysno::execveat),
            (STATX, Sysno::statx),
            (URETPROBE, Sysno::uretprobe),
            (UPROBE, Sysno::uprobe),
            (OPENAT2, Sysno::openat2),
            (FACCESSAT2, Sysno::faccessat2),
        ];
        for (ours, sysno) in table {
            assert_eq!(ours, sysno as u64, "{}", sysno.name());
        }
    }
}
