//! The few C functions the hot path calls, declared here: the object is compiled by `build.rs`
//! with no crate but std, so it cannot use the `libc` crate. Linux (glibc) only, as the code
//! calling them.
#![allow(non_camel_case_types)]

#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

    pub(crate) type pthread_t = c_ulong;
    pub(crate) type pthread_key_t = c_uint;
    pub(crate) type clockid_t = c_int;

    /// Storage for glibc's `pthread_attr_t` (56 bytes on x86_64, 64 on aarch64): only ever
    /// handled by pointer, or zeroed and filled by glibc.
    #[repr(C, align(8))]
    pub(crate) struct pthread_attr_t {
        _storage: [u8; 64],
    }

    /// `RTLD_NEXT` in glibc's `<dlfcn.h>`.
    pub(crate) const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
    pub(crate) const ENOSYS: c_int = 38;
    pub(crate) const PTHREAD_CREATE_JOINABLE: c_int = 0;

    extern "C" {
        pub(crate) fn gettid() -> c_int;
        pub(crate) fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        pub(crate) fn pthread_self() -> pthread_t;
        pub(crate) fn pthread_getcpuclockid(thread: pthread_t, clock: *mut clockid_t) -> c_int;
        pub(crate) fn pthread_key_create(
            key: *mut pthread_key_t,
            destructor: Option<unsafe extern "C" fn(*mut c_void)>,
        ) -> c_int;
        pub(crate) fn pthread_key_delete(key: pthread_key_t) -> c_int;
        pub(crate) fn pthread_setspecific(key: pthread_key_t, value: *const c_void) -> c_int;
        pub(crate) fn pthread_attr_getdetachstate(attr: *const pthread_attr_t, state: *mut c_int) -> c_int;
        pub(crate) fn pthread_getattr_np(thread: pthread_t, attr: *mut pthread_attr_t) -> c_int;
        pub(crate) fn pthread_attr_getstack(
            attr: *const pthread_attr_t,
            low: *mut *mut c_void,
            size: *mut usize,
        ) -> c_int;
        pub(crate) fn pthread_attr_destroy(attr: *mut pthread_attr_t) -> c_int;
    }
}
