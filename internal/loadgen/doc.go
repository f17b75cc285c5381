// Package loadgen is a small closed-loop HTTP load generator for the
// benchmarks: a fixed number of clients each send requests back to back for
// a duration, and the run reports requests per second and latency
// percentiles. It measures; it asserts nothing.
package loadgen
