//! Lockstep's template crate: ESO's v2 template engine (Go `text/template` semantics with the
//! sprig and ESO function library) that turns provider data into Secret data. Pure: no
//! environment, file system or network access.
