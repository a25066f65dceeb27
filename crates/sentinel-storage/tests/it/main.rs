//! The one integration-test binary of sentinel-storage: the same round-trip, abort and error suite
//! against every backend (local directory, S3 on moto, Azure on Azurite, GCS on fake-gcs-server).

mod azure;
mod common;
mod gcs;
mod local;
mod s3;
