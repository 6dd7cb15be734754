//! Every end-to-end test of amiwarden, in one test binary.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
mod cases;
mod conformance;
mod plans;
mod safety;
mod sandbox;
mod scaffold;
mod support;
