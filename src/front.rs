//! Front ends: the public ways to run a check. The attribute runtime (what `#[leak_test]` runs
//! around a body), `verify_none*` and `Options::find*`, the whole-binary check
//! (`check_binary!`), and `dump()`. Each resolves its settings once and calls the check layer.

pub(crate) mod attribute;
pub(crate) mod binary;
pub(crate) mod dump;
pub(crate) mod verify;
