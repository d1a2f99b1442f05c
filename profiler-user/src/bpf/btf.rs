//! Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to find where a member of a kernel
//! struct lives, so a program can read it on this kernel whatever its build.

use std::{fs, path::Path};

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

struct Type {
    kind: u32,
    name_off: u32,
    vlen: usize,
    kind_flag: bool,
    /// Byte offset of the kind-specific data that follows the common part.
    data: usize,
}

struct Btf {
    raw: Vec<u8>,
    str_start: usize,
    /// Indexed by type id; id 0 is `void`.
    types: Vec<Type>,
}

impl Btf {
    fn parse(raw: Vec<u8>) -> Option<Self> {
        let mut btf = Btf {
            raw,
            str_start: 0,
            types: Vec::new(),
        };
        if btf.u16_at(0)? != BTF_MAGIC {
            return None;
        }
        let hdr_len = btf.u32_at(4)? as usize;
        let type_start = hdr_len + btf.u32_at(8)? as usize;
        let type_end = type_start + btf.u32_at(12)? as usize;
        btf.str_start = hdr_len + btf.u32_at(16)? as usize;
        btf.types.push(Type {
            kind: 0,
            name_off: 0,
            vlen: 0,
            kind_flag: false,
            data: 0,
        });
        let mut pos = type_start;
        while pos + 12 <= type_end {
            let info = btf.u32_at(pos + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let data = pos + 12;
            let extra = match kind {
                1 | 14 | 17 => 4,             // int, var, decl_tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => vlen * 12, // struct, union, datasec, enum64
                6 | 13 => vlen * 8,           // enum, func_proto
                _ => 0, // ptr, fwd, typedef, qualifiers, func, float, type_tag
            };
            let name_off = btf.u32_at(pos)?;
            btf.types.push(Type {
                kind,
                name_off,
                vlen,
                kind_flag: info >> 31 == 1,
                data,
            });
            pos = data + extra;
        }
        Some(btf)
    }

    fn u16_at(&self, o: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.raw.get(o..o + 2)?.try_into().ok()?))
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.raw.get(o..o + 4)?.try_into().ok()?))
    }

    fn string(&self, off: u32) -> Option<&[u8]> {
        let s = self.raw.get(self.str_start + off as usize..)?;
        Some(&s[..s.iter().position(|b| *b == 0)?])
    }

    /// Offset of `member` in the struct or union `id`, which starts at `base`.
    fn find_member(&self, id: usize, base: u32, member: &[u8], depth: u32) -> Option<u32> {
        let t = self.types.get(id)?;
        if (t.kind != KIND_STRUCT && t.kind != KIND_UNION) || depth > 8 {
            return None;
        }
        for i in 0..t.vlen {
            let m = t.data + i * 12;
            let (m_name, m_type, m_off) =
                (self.u32_at(m)?, self.u32_at(m + 4)?, self.u32_at(m + 8)?);
            let bit_off = if t.kind_flag {
                m_off & 0x00ff_ffff
            } else {
                m_off
            };
            let off = base + bit_off / 8;
            if m_name == 0 {
                // An anonymous struct or union: its members are the outer struct's.
                if let Some(found) = self.find_member(m_type as usize, off, member, depth + 1) {
                    return Some(found);
                }
            } else if self.string(m_name)? == member {
                return Some(off);
            }
        }
        None
    }
}

/// Byte offset of `member` in `struct name`, looking through anonymous inner structs and unions.
pub(crate) fn member_offset(btf_path: &Path, name: &str, member: &str) -> Option<u32> {
    let btf = Btf::parse(fs::read(btf_path).ok()?)?;
    let id = btf
        .types
        .iter()
        .position(|t| t.kind == KIND_STRUCT && btf.string(t.name_off) == Some(name.as_bytes()))?;
    btf.find_member(id, 0, member.as_bytes(), 0)
}

/// Where the running kernel's BTF is.
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `member` in `struct name` of the running kernel, as a program's global takes
/// it: `u32::MAX` when unknown (no BTF, or no such member).
pub(crate) fn kernel_member_offset(name: &str, member: &str) -> u32 {
    member_offset(Path::new(VMLINUX), name, member).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF, or None (saying the test is skipped) when it has none.
    fn vmlinux() -> Option<&'static Path> {
        let vmlinux = Path::new(VMLINUX);
        if !vmlinux.exists() {
            eprintln!("skipped: this kernel has no BTF");
            return None;
        }
        Some(vmlinux)
    }

    #[test]
    fn finds_task_struct_exit_code_when_the_kernel_has_btf() {
        let Some(vmlinux) = vmlinux() else { return };
        let exit_code = member_offset(vmlinux, "task_struct", "exit_code").expect("exit_code");
        let pid = member_offset(vmlinux, "task_struct", "pid").expect("pid");
        assert!(exit_code > 0 && pid > 0 && exit_code != pid);
        assert_eq!(
            member_offset(vmlinux, "task_struct", "no_such_member"),
            None
        );
    }

    /// The errors family reads a socket's error (a non-blocking connect that failed) there.
    #[test]
    fn finds_sock_sk_err_when_the_kernel_has_btf() {
        let Some(vmlinux) = vmlinux() else { return };
        let sk_err = member_offset(vmlinux, "sock", "sk_err").expect("sk_err");
        // After the embedded `struct sock_common`, which starts the struct.
        let common = member_offset(vmlinux, "sock", "__sk_common").expect("__sk_common");
        assert!(common == 0 && sk_err > 0);
        assert_eq!(kernel_member_offset("sock", "sk_err"), sk_err);
        assert_eq!(kernel_member_offset("sock", "no_such_member"), u32::MAX);
    }
}
