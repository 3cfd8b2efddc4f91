// The pod sandbox ("pause") program for the local test environment's node: standard library
// only, built static and packed into the lockstep.invalid/pause image by deploy/image/build.py.
module lockstep.dev/testenv/pause

go 1.24
