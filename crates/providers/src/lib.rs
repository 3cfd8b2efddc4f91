//! Lockstep's providers crate: the clients that read from and write to secret stores (AWS,
//! Vault/OpenBao, Kubernetes, ...), the cache of their clients and credentials, and the
//! coalescing of identical reads.
