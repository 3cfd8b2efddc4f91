//! Provider tests against the real stores, without the controller.

mod aws;
mod kubernetes;
mod openbao;
