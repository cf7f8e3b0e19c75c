// The guide, as doc-only modules (clap's `_tutorial` and `_cookbook` are the model): each chapter
// is a Markdown file under `docs/guide/`, included as the documentation of an empty module, so
// docs.rs shows it beside the API, its links to the API are checked by `cargo doc`, and its Rust
// examples run as doctests. The modules hold no items.
#![doc = include_str!("../../docs/guide/index.md")]

#[doc = include_str!("../../docs/guide/reports.md")]
pub mod reports {}

#[doc = include_str!("../../docs/guide/options.md")]
pub mod options {}

#[doc = include_str!("../../docs/guide/environment.md")]
pub mod environment {}

#[doc = include_str!("../../docs/guide/children.md")]
pub mod children {}

#[doc = include_str!("../../docs/guide/zero_annotation.md")]
pub mod zero_annotation {}

#[doc = include_str!("../../docs/guide/composition.md")]
pub mod composition {}

#[doc = include_str!("../../docs/guide/how_it_works.md")]
pub mod how_it_works {}

#[doc = include_str!("../../docs/guide/limits.md")]
pub mod limits {}

#[doc = include_str!("../../docs/guide/versions.md")]
pub mod versions {}
