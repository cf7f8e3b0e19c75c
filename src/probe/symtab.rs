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
//! `object` crate reads the section headers, `.symtab` and its string table from
//! `/proc/self/exe`, mapped read-only so that only those pages (a few MB) are read, not the debug
//! info. A file that is not an ELF64 executable, or a stripped one, gives no names.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::sync::OnceLock;

use object::elf::{FileHeader64, SHT_SYMTAB, STT_FUNC};
use object::read::elf::{FileHeader as _, SectionHeader as _, Sym as _};
use object::{Endianness, StringTable};

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
    let strings = StringTable::new(&table.strings[..], 0, table.strings.len() as u64);
    let name = strings.get(function.name).ok()?;
    Some(format!("{:#}", backtrace::SymbolName::new(name)))
}

/// The executable's functions, sorted by address, and their names.
struct Table {
    /// What to subtract from a run-time address to get the symbol table's (the load bias).
    bias: usize,
    functions: Vec<Function>,
    /// The symbol table's string table.
    strings: Vec<u8>,
}

struct Function {
    start: u64,
    size: u64,
    /// Offset of the mangled name in [`Table::strings`].
    name: u32,
}

impl Table {
    fn load() -> Option<Table> {
        let file = Mapped::of(&File::open("/proc/self/exe").ok()?)?;
        let (functions, strings) = functions(file.bytes())?;
        Some(Table {
            bias: executable_bias()?,
            functions,
            strings,
        })
    }
}

/// The defined functions of the ELF64 file `data`, sorted by address, and the string table
/// their names are in; none for a file without a symbol table (stripped).
fn functions(data: &[u8]) -> Option<(Vec<Function>, Vec<u8>)> {
    let header = FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let symbols = sections.symbols(endian, data, SHT_SYMTAB).ok()?;
    let mut functions: Vec<Function> = symbols
        .symbols()
        .iter()
        .filter(|symbol| symbol.st_type() == STT_FUNC && !symbol.is_undefined(endian))
        .map(|symbol| Function {
            start: symbol.st_value(endian),
            size: symbol.st_size(endian),
            name: symbol.st_name(endian),
        })
        .filter(|function| function.size > 0)
        .collect();
    functions.sort_unstable_by_key(|function| function.start);
    let strings = match functions.is_empty() {
        true => Vec::new(),
        false => sections
            .section(symbols.string_section())
            .ok()?
            .data(endian, data)
            .ok()?
            .to_vec(),
    };
    Some((functions, strings))
}

/// A file mapped read-only for the time of one read: only the pages read (the headers, the
/// symbol and string tables) are paged in, not the debug info of a large test binary.
struct Mapped {
    address: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn of(file: &File) -> Option<Mapped> {
        let len = usize::try_from(file.metadata().ok()?.len())
            .ok()
            .filter(|&len| len > 0)?;
        // SAFETY: a private, read-only mapping of a whole file, checked below.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (address != libc::MAP_FAILED).then_some(Mapped { address, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` mapped bytes, unmapped only on drop. The file is the running executable,
        // which the kernel does not let anyone write or truncate (`ETXTBSY`) while it runs.
        unsafe { std::slice::from_raw_parts(self.address.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `of`, no longer borrowed.
        unsafe { libc::munmap(self.address, self.len) };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stripped file (libc's, where the distribution strips it) gives no functions; the
    /// executable's own table is in `symbols`' tests, beside the function it names.
    #[test]
    fn stripped_file_has_no_functions() {
        // SAFETY: plain data, filled by `dladdr` for an address inside libc.
        let path = unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            assert_ne!(libc::dladdr(libc::getpid as *const libc::c_void, &mut info), 0);
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_str()
                .unwrap()
                .to_owned()
        };
        let file = Mapped::of(&File::open(&path).unwrap()).unwrap();
        let (functions, strings) = functions(file.bytes()).expect("an ELF64 file");
        let header = FileHeader64::<Endianness>::parse(file.bytes()).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, file.bytes()).unwrap();
        if sections
            .iter()
            .any(|section| section.sh_type(endian) == SHT_SYMTAB)
        {
            eprintln!("{path} is not stripped: skipped");
            return;
        }
        assert!(functions.is_empty() && strings.is_empty(), "{path}");
        assert!(super::functions(b"not an ELF file").is_none());
    }
}
