//! The monitor worker's tests, one binary: the store on both engines, and HTTP targets checked
//! through `sentinel up` against real servers on loopback.

mod alerts;
mod crash;
mod dashboard;
mod ingest;
mod servers;
mod store;
mod targets;
mod thresholds;
