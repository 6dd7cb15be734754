//! Every end-to-end test of amiwarden, in one test binary.

mod sandbox;
mod support;
