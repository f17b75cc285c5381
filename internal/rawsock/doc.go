// Package rawsock reads and writes a non-blocking socket with raw read(2)
// and write(2) calls made inside the Go runtime's poller.
//
// The poller still parks the goroutine while the socket is not ready and
// still applies the connection's deadlines; what a raw call saves is the
// runtime's syscall state. Under load on a VM, where a write that wakes
// the peer takes 20 µs or more, the runtime's sysmon thread retakes the P
// of a goroutine in a syscall that spans two of its ticks, hands the P to
// another thread and goes back to polling every 20 µs: a wake-up of sysmon
// and of a thread per retake (docs/BENCHMARKS.md, issue 16). A raw call
// looks to the scheduler like a running goroutine instead.
//
// It is only for sockets the runtime made non-blocking (net.Conn,
// os.File from a socketpair): a raw call that blocked would hold its P.
// It is not a general I/O layer; on systems other than Linux it makes
// ordinary syscalls inside the same poller callbacks.
package rawsock
