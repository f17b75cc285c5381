// Package seccomp is the sandbox workers' system call policy and the
// compiler that turns it into a kernel filter.
//
// The policy is data (Policy: one Rule per allowed call, with argument
// checks and the reason the worker needs it), printed by FormatPolicy and
// frozen by testdata/policy.golden. BuildFilter compiles rules into a
// classic BPF program for this architecture: a foreign architecture kills
// the process, x32 numbers get EPERM, hot calls come first so that the
// kernel's action cache allows them without running the filter, and every
// other call gets the deny action. Install loads a program on every thread;
// with a user-notification listener, TakeListener and ServeNotifications
// let a supervisor count and attribute each denied call. Sweep, run under
// the filter, checks that every number the policy does not list is denied.
//
// The syscall table is one list of names (syscalls.go) whose numbers
// x/sys/unix gives per architecture; the arch files hold only what differs:
// the audit architecture, the x32 bit, calls only one architecture has and
// calls the kernel never shows to seccomp.
//
// The package does not set a process up (namespaces, Landlock, rlimits,
// privileges: package sandbox does), and knows nothing of what a worker
// runs. It is Linux-only, for x86-64 and arm64: elsewhere it is empty.
package seccomp
