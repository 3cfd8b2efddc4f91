//! The CRDs on a real apiserver: schema, defaults, CEL admission rules, ESO manifests.

mod admission;
