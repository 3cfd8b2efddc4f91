//! Lockstep's controller crate: the reconcilers (ExternalSecret sync, SecretStore validation,
//! reload of the workloads that use a Secret or ConfigMap) and the context they share.
