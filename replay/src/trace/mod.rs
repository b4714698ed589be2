//! Trace files: format, writer, reader.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{
    ChunkKind, EndRecord, HostRecord, IntervalCode, IntervalLandmark, Lineage, TraceHeader, CANONICAL_FLAGS_SINCE,
    FORMAT_VERSION, LANDMARKS_SINCE, LINEAGE_SINCE, STRICT_STEPS_SINCE,
};
pub use reader::{ChunkRef, TraceError, TraceFile};
pub use writer::{TraceLocked, TraceWriter};
