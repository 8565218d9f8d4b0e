//! Workspace integration tests: one binary, one module per topic, all
//! running real components (built by `tests/build.rs`) in the real sandbox.

mod api;
mod attack;
mod cache;
mod capabilities;
mod concurrency;
mod determinism;
mod events;
mod examples;
mod hostile;
mod issuer;
mod jobs;
mod ledger;
mod market;
mod overlay;
mod paid;
mod rejects;
mod sealed;
mod services;
mod support;
