//! The executable's ELF symbol table: the full name of a function that debug info names bare.
//!
//! With `debug = "line-tables-only"` (a common setting for faster CI builds), rustc gives a
//! function that has inlined callees a DWARF entry holding only its bare name (`start_blocked`,
//! `{closure#0}`), and the symbolizer prefers that entry to the symbol table's
//! `app::start_blocked`. A bare name defeats every rule written with a path
//! (`ignore_creator = "app::start_blocked"`) and every report line that names the function, so
//! `probe::symbols` asks here for the symbol that holds the address instead.
//!
//! Read once, on the first bare name, and never in a build with full or no debug info: the
//! section headers, `.symtab` and its string table, read from `/proc/self/exe` (a few MB). A file
//! that is not a little-endian ELF64 executable, or a stripped one, gives no names.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::OnceLock;

/// The demangled name of the executable's function containing `address` (a run-time address),
/// as backtrace writes names (no hash suffix); `None` outside the executable's symbol table.
pub(crate) fn function_at(address: usize) -> Option<String> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    let table = TABLE.get_or_init(Table::load).as_ref()?;
    let at = address.checked_sub(table.bias)? as u64;
    let index = table.functions.partition_point(|function| function.start <= at);
    let function = &table.functions[index.checked_sub(1)?];
    if at >= function.start + function.size {
        return None;
    }
    let name = table.strings.get(function.name as usize..)?;
    let name = &name[..name.iter().position(|&b| b == 0)?];
    Some(format!("{:#}", backtrace::SymbolName::new(name)))
}

/// The executable's functions, sorted by address, and their names.
struct Table {
    /// What to subtract from a run-time address to get the symbol table's (the load bias).
    bias: usize,
    functions: Vec<Function>,
    strings: Vec<u8>,
}

struct Function {
    start: u64,
    size: u64,
    /// Offset of the NUL-terminated mangled name in [`Table::strings`].
    name: u32,
}

/// ELF constants (from `<elf.h>`).
const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;
const SHN_UNDEF: u16 = 0;

impl Table {
    fn load() -> Option<Table> {
        let file = File::open("/proc/self/exe").ok()?;
        let read = |offset: u64, len: u64| -> Option<Vec<u8>> {
            let mut bytes = vec![0; usize::try_from(len).ok()?];
            file.read_exact_at(&mut bytes, offset).ok()?;
            Some(bytes)
        };
        let header = read(0, 64)?;
        // Magic, 64-bit, little-endian.
        if header[..6] != [0x7f, b'E', b'L', b'F', 2, 1] {
            return None;
        }
        let (sections_at, count) = (u64_at(&header, 0x28)?, u64::from(u16_at(&header, 0x3c)?));
        let sections = read(sections_at, count * 64)?;
        let section = |index: u64| sections.get(usize::try_from(index * 64).ok()?..)?.get(..64);
        let symtab = (0..count)
            .filter_map(section)
            .find(|header| u32_at(header, 4) == Some(SHT_SYMTAB))?;
        let symbols = read(u64_at(symtab, 0x18)?, u64_at(symtab, 0x20)?)?;
        let strtab = section(u64::from(u32_at(symtab, 0x28)?))?;
        let strings = read(u64_at(strtab, 0x18)?, u64_at(strtab, 0x20)?)?;
        let mut functions: Vec<Function> = symbols
            .chunks_exact(24)
            .filter(|symbol| symbol[4] & 0xf == STT_FUNC && u16_at(symbol, 6) != Some(SHN_UNDEF))
            .filter_map(|symbol| {
                Some(Function {
                    start: u64_at(symbol, 8)?,
                    size: u64_at(symbol, 16)?,
                    name: u32_at(symbol, 0)?,
                })
            })
            .filter(|function| function.size > 0)
            .collect();
        functions.sort_unstable_by_key(|function| function.start);
        Some(Table {
            bias: executable_bias()?,
            functions,
            strings,
        })
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The executable's load bias: the first object `dl_iterate_phdr` reports is the main program.
fn executable_bias() -> Option<usize> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Option<usize>` below; `info` is valid during the callback.
        unsafe { *data.cast::<Option<usize>>() = Some((*info).dlpi_addr as usize) };
        1
    }
    let mut bias: Option<usize> = None;
    // SAFETY: the callback only writes the `Option<usize>` it is given, and stops at once.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut bias).cast()) };
    bias
}
