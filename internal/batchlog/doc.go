// Package batchlog is the node's log output: lines that many request
// goroutines write reach the file in batches, one write(2) for all the
// lines of a few milliseconds instead of one per line.
//
// The gateway logs every request (its access line), and on this kind of
// machine a write(2) costs several microseconds of a request's budget.
// A line waits at most the batch delay; Flush and Close write what waits.
package batchlog
