//! Domain types shared by every kbsync crate, and the injected sources of time and randomness.
//!
//! Nothing here performs I/O: the store persists these types, the server exposes them, and the
//! ingestion pipeline fills documents with text.

pub mod clock;
pub mod datasource;
pub mod model;
pub mod random;
pub mod retry;

pub use clock::{Clock, ManualClock, SystemClock};
pub use model::*;
pub use random::{OsRandom, Random, SeededRandom};
