//! Smoke tests that prove the ground is real: each server answers as the real thing does.

pub(crate) mod control_plane;
mod moto;
mod node;
mod openbao;
mod teardown;
