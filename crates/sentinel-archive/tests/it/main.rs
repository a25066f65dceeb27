//! sentinel-archive's one integration-test binary: round trips through the codec threads, interop
//! with the stock zstd/gzip/age/zip/tar tools, corruption and truncation, and the memory bound.

mod archives;
mod corruption;
mod helpers;
mod interop;
mod memory;
mod round_trip;
