//! Lockstep's end-to-end tests: one test binary, run against the local test environment that
//! `testenv/testenv.py` starts (real kube-apiserver, etcd, kube-controller-manager, OpenBao and
//! moto on loopback).

mod api;
mod binary;
mod chart;
mod image;
mod install;
mod lifecycle;
mod providers;
mod reload;
mod smoke;
mod sync;
