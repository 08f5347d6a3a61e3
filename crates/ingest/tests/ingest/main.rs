//! The ingest crate's tests, one binary: extraction of every supported type, from memory and from
//! a file, broken and hostile inputs, the extractor pool's limits, and the chunker's properties.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broken_inputs;
mod chunk_properties;
mod extract_from_file;
mod extract_roundtrip;
mod extractor_pool;
mod fuzz_properties;
mod hostile_files;
