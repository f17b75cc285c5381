// Package report is the edge's side of fleet automatic blocks: a Reporter
// queues each source the node's shield blocked automatically and
// publishes it to the hub (fleet.propose_auto_blocks), where the
// controller (internal/fleet/controller) promotes a source that enough
// edges report to a fleet block.
//
// # The queue
//
// Reports are queued on disk, in Options.Dir under the node's state
// directory, so they survive a hub outage and a restart of the node. The
// queue is one file of JSON lines: a record line adds or replaces a
// report (by id), a done line removes one. Report appends and fsyncs
// before it returns; a crash in the middle of a write leaves a torn last
// line, which New skips. New rewrites the file compacted (write, fsync,
// rename), and so does Run once removed lines outnumber queued ones.
//
// A source reported again while it is still queued is merged into the
// queued report (the later time, the later expiry) rather than queued
// twice. The queue holds at most Options.MaxQueue reports; beyond that
// the oldest is dropped and counted (Stats.Dropped).
//
// # Sending
//
// Run publishes the queued reports, oldest first, to
// hub.ReportSubject(name) with JetStream acknowledgements, and removes
// each once the hub has acknowledged it. A report whose ack was lost is
// sent again with the same message id, which the stream deduplicates
// within its window; past it, a duplicate is harmless (the controller
// counts distinct edges per source).
//
// # What it is not
//
// It decides nothing: it does not check that a report is worth promoting
// (too broad, already expired); the controller does, trusting the
// subject's edge name (bus permissions tie it to the edge's user) and not
// the payload's.
package report
