//! Provider tests against the real stores, without the controller.

mod kubernetes;
mod openbao;
