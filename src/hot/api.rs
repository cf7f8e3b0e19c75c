//! The functions leakcheck calls, listed once for both sides: the object exports each under
//! `leakcheck_hot_<name>` (`export`), leakcheck declares and calls them by that name when the
//! object is linked (`import`), or calls the module's own functions when it is not (`direct`).
//!
//! Every type in a signature is std's or [`super::node::Node`] (`#[repr(C)]`, one source for both
//! sides), so both compilations agree on layouts.

/// Expands `$expand!` over the list.
macro_rules! hot_api {
    ($expand:ident) => {
        $expand! {
            fn current() -> Arc<Node> = lineage::current;
            fn current_named() -> Arc<Node> = lineage::current_named;
            fn live_descendants(root: &Node) -> Vec<Arc<Node>> = lineage::live_descendants;
            fn all_live() -> Vec<Arc<Node>> = lineage::all_live;
            fn all_registered(kernel_count: &mut dyn FnMut() -> Option<usize>) -> Option<u64> =
                lineage::all_registered;
            fn by_tid(tid: i32) -> Option<Arc<Node>> = lineage::by_tid;
            fn set_detach_next(detach: bool) -> () = lineage::set_detach_next;
            fn interposer_seen() -> bool = lineage::interposer_seen;
            fn exit_count() -> u64 = lineage::exit_count;
            fn wait_for_exit(seen: u64, timeout: Duration) -> () = lineage::wait_for_exit;
            fn prepare() -> bool = lineage::prepare;
            fn fast_trace(out: &mut [usize]) -> Option<usize> = unwind::trace;
            fn ran_before(ran: &AtomicBool, test: &str) -> bool = pass::ran_before;
            fn swap_context(context: *const ()) -> *const () = pass::swap_context;
            fn context() -> *const () = pass::context;
            fn run_usual(
                context: *const (),
                body: &mut dyn FnMut(),
                found: &mut Option<Arc<Node>>
            ) -> Option<std::thread::Result<()>> = pass::run_usual;
        }
    };
}

/// The object's side: each function exported under its `leakcheck_hot_` name.
#[allow(unused_macros)]
macro_rules! export {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $($path:ident)::+;)*) => {$(
        #[export_name = concat!("leakcheck_hot_", stringify!($name))]
        pub fn $name($($arg: $ty),*) -> $ret {
            $($path)::+($($arg),*)
        }
    )*};
}

/// leakcheck's side with the object linked: the exported functions, declared and wrapped.
#[allow(unused_macros)]
macro_rules! import {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $($path:ident)::+;)*) => {
        mod linked {
            use super::*;

            extern "Rust" {
                $(
                    #[link_name = concat!("leakcheck_hot_", stringify!($name))]
                    pub(super) fn $name($($arg: $ty),*) -> $ret;
                )*
            }
        }

        $(
            pub(crate) fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the object exports this function with this exact signature: both sides
                // expand the same list, with the same types.
                unsafe { linked::$name($($arg),*) }
            }
        )*
    };
}

/// leakcheck's side with these files compiled in: the module's own functions.
#[allow(unused_macros)]
macro_rules! direct {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $($path:ident)::+;)*) => {$(
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            $($path)::+($($arg),*)
        }
    )*};
}

/// leakcheck's calls into the hot path: the object's functions where `build.rs` linked it, else
/// the functions of these same files compiled into leakcheck.
#[cfg(not(leakcheck_hot_object))]
pub(crate) mod call {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::node::Node;

    #[cfg(all(leakcheck_hot_linked, not(test), not(doc), not(clippy)))]
    hot_api!(import);

    #[cfg(not(all(leakcheck_hot_linked, not(test), not(doc), not(clippy))))]
    use super::super::{lineage, pass, unwind};
    #[cfg(not(all(leakcheck_hot_linked, not(test), not(doc), not(clippy))))]
    hot_api!(direct);
}
