//! Trace files: format, writer, reader.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{
    decode_anchors, AnchorLandmark, ChunkKind, EndRecord, HostRecord, IntervalAnchors, IntervalAnchorsV7, IntervalCode,
    IntervalLandmark, Lineage, TraceHeader, Waypoint, ANCHORS_SINCE, CANONICAL_FLAGS_SINCE, FORMAT_VERSION,
    FXSAVE_ALONE_SINCE, IRETQ_DROPS_TF_SINCE, LANDMARKS_SINCE, LINEAGE_SINCE, STRICT_STEPS_SINCE, WAYPOINTS_SINCE,
    WAYPOINT_EVERY,
};
pub use reader::{ChunkRef, TraceError, TraceFile};
pub use writer::{TraceLocked, TraceWriter};
