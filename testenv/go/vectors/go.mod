// Prints golden vectors for Lockstep's ESO-compatible hashes (see main.go), in a module of
// its own so that nothing else moves its dependencies.
module lockstep.dev/testenv/vectors

go 1.24.0

require golang.org/x/crypto v0.36.0

require golang.org/x/sys v0.31.0 // indirect
