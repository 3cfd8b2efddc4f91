//! Provider tests against the real stores, without the controller.

pub(crate) mod aws;
mod aws_coalesce;
mod aws_endpoints;
pub(crate) mod aws_proxy;
mod kubernetes;
mod openbao;
mod openbao_coalesce;
