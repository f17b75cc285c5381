// Package sandboxtest holds what the tests of the packages that start
// sandbox workers (sandbox itself, the executor) share: the check that
// nothing a pool had outlives it (descriptors, worker processes, zombies,
// cgroups), and the count of bytes a decoder allocates for what a worker
// sends.
//
// It does not import package sandbox, so that sandbox's own tests can use
// it; it knows the one sandbox fact it needs, the cgroup names (Cgroups),
// and sandbox's tests check that it matches.
package sandboxtest
