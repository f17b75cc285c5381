// Package testutil holds helpers for aegis's tests only: privilege checks,
// throw-away network namespaces joined by veth pairs (package netlab's
// namespaces, removed at the test's cleanup and failing the test instead of
// returning errors), traffic checks across them, and Scale, which fits a
// test's wall-clock budgets to the machine's speed. Frames for
// BPF_PROG_TEST_RUN and fuzzers are built with netlab.Packet.
//
// It must never be imported by non-test code: it depends on package testing,
// creates and deletes kernel objects, and panics on malformed input where a
// test helper may.
//
// Network helpers follow the project's rules for network tests: they touch
// only loopback and namespaces that the test creates itself, use only the
// documentation ranges 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 inside
// those namespaces, and register every namespace, link and mount for removal
// with t.Cleanup so that nothing is left behind when a test fails.
package testutil
