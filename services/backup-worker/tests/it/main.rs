//! The backup worker's integration tests: real dump tools, the real codec and real storages (local
//! disk, the S3 emulator) joined by the streaming pipeline, and backups through the whole product
//! (`sentinel up` and its API).

mod clouds;
mod completeness;
mod crash;
mod janitor;
mod jobs;
mod objectives;
mod pipeline;
mod verify;
