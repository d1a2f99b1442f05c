//! TEMPORARY STUB
pub(crate) struct BlockedSyscall {
    pub nr: i64,
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
}
pub(crate) fn blocked_syscall(_pid: i32, _tid: i32) -> std::io::Result<Option<BlockedSyscall>> {
    Ok(None)
}
pub(crate) fn read_u32(_pid: i32, _addr: u64) -> std::io::Result<u32> {
    Ok(0)
}
pub(crate) fn read_u64(_pid: i32, _addr: u64) -> std::io::Result<u64> {
    Ok(0)
}
pub(crate) fn thread_ids(_pid: i32) -> Vec<i32> {
    Vec::new()
}
pub(crate) fn thread_name(_pid: i32, _tid: i32) -> Option<String> {
    None
}
