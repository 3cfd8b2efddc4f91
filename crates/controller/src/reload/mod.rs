//! The reload controller: rolls the workloads that use a Secret or ConfigMap when its data
//! changes, with Stakater Reloader's annotations and strategies.

pub mod decide;
pub mod patch;
pub mod refs;
