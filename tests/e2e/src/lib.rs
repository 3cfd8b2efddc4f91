//! Support shared by Lockstep's end-to-end tests: the local test environment's variables and
//! clients, a namespace per test that is cleaned up afterwards, and waits with timeouts.
//!
//! The environment is started by `testenv/testenv.py` (the README's test command does it). When
//! it is not running, every end-to-end test fails with a message that says how to start it: no
//! test passes or skips silently.

mod crds;
mod env;
mod lockstep;
mod logs;
mod namespace;
pub mod node;
mod openbao;
mod wait;

pub use crds::ensure_crds;
pub use env::{TestEnv, test_env};
pub use lockstep::Lockstep;
pub use logs::{capture_logs, captured_logs};
pub use namespace::{TestNamespace, cluster_scoped, unique_name};
pub use openbao::OpenBao;
pub use wait::{TIMEOUT, eventually};
