//! Every end-to-end test of amiwarden, in one test binary.

mod cases;
mod sandbox;
mod support;
