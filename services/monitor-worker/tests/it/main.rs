//! The monitor worker's tests, one binary: the store on both engines (targets, alerts, thresholds,
//! heartbeat checks), and HTTP targets, ingest and pings through `sentinel up` against real servers
//! on loopback.

mod alerts;
mod crash;
mod dashboard;
mod heartbeat_api;
mod heartbeats;
mod ingest;
mod notify;
mod notify_api;
mod secret_headers;
mod servers;
mod store;
mod targets;
mod thresholds;
