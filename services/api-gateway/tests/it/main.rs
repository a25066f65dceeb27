//! Black-box tests of the gateway: an in-process gateway on port 0 over SQLite and the in-process bus,
//! driven over HTTP like any client.

mod access;
mod credentials;
mod helpers;
mod jobs;
mod openapi;
mod provisioning;
mod reservations;
mod schedules;
mod servers;
mod streams;
