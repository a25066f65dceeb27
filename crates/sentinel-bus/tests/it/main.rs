//! Integration tests of the bus: one conformance suite run against both backends, plus Redis-only
//! behaviour (reconnect after a Redis restart, prefix isolation, bounded memory).

mod conformance;
mod redis_only;
