// Package audit is the tamper-evident audit log of an aegis node: one
// JSON line per eBPF or control operation, written and fsynced before the
// operation is acknowledged.
//
// # Records and the chain
//
// A record is one line: seq, time (RFC 3339, UTC, nine fractional
// digits), op, target, details, actor ("system" or "uid=U pid=P"),
// result, error, ref, prev and hash. hash is the SHA-256 of the line's
// bytes up to its ",\"hash\":" member; prev is the previous record's hash
// (Genesis, 64 zeros, for record 1). So an edited byte is caught at the
// edited record itself (its hash no longer matches), and a record whose
// hash was recomputed breaks the chain at the next one.
//
// # Files and the head
//
// A log is a directory of files named audit-<first seq>.jsonl (twelve
// digits) and a head file. A new file is started when the next group
// commit would take the current one past Options.MaxFileBytes; its first
// record chains to the last record of the previous file. The head holds
// the seq and hash of the last acknowledged record in two alternating
// checksummed slots; it is rewritten and fdatasynced after the log file in
// every group commit. A hash chain alone cannot tell a log whose last
// records were removed from a shorter log: the head can.
//
// # The anchor
//
// The head goes with its directory. With Options.Anchor, the seq and hash
// of the last record written are also kept in a file outside it (the node
// uses <state_dir>/audit.anchor), in the head's format, written after the
// records are synced and before the head. Open and VerifyDirAnchored
// require the log to hold the anchor's record with the anchor's hash: a
// directory emptied, cut short with its head rewritten to match, or
// replaced by another valid chain is reported as tampering at the first
// record missing below the anchor's, or at the anchor's record. A log
// without an anchor adopts one when opened with Options.Anchor.
//
// # Crashes versus tampering
//
// Append acknowledges a record only after both the log file and the head
// are synced, so every acknowledged record is at or before the head. What
// lies beyond the head was never acknowledged, and its operation never
// performed:
//
//   - a final line without its newline, beyond the head, is a write cut
//     short by a crash (kill -9, power loss): Verify reports it in
//     Result.TornBytes and still succeeds, and Open removes it;
//   - complete records beyond the head were written but not acknowledged
//     (a crash between the two syncs): Verify counts them in
//     Result.Unacknowledged, and Open keeps them and appends an OpRecover
//     record naming their range;
//   - anything missing at or before the head is truncation, reported as
//     tampering at the first missing sequence number, as is any invalid
//     complete line anywhere.
//
// VerifyDir checks a whole directory from record 1 to the head. Verify
// checks files named on the command line as one chain: a file whose name
// says it starts the log must start with record 1, otherwise the first
// record is taken on trust, and the head is used only when the last file
// is the newest of its directory.
//
// Open checks the files from the one holding the head's record onward and
// refuses a log that fails (errors.Is(err, ErrTampered)) rather than chain
// new records onto it: a node whose log was tampered with does not start
// until an operator has kept the evidence and moved the directory aside.
//
// # Failure is closed
//
// If a write, sync or head update fails, Append returns the error and the
// record is not part of the log: the file is cut back to where the batch
// began (should even that fail, the records stay beyond the head,
// unacknowledged, as after a crash), the chain rewinds, and records queued
// behind it fail too (they were chained onto it). The next Append re-reads the log from disk as
// Open does before continuing, so a record that may or may not have
// reached the disk never forks the chain. The intended use is: Append the
// operation with its result, then apply it; if applying fails, Append a
// ResultFailed record whose Ref is the first record's seq.
//
// # What it is not
//
// The chain and head detect edits by someone who does not rewrite the
// whole chain: anyone who can write the directory and the anchor can
// recompute every hash, the head and the anchor. Publishing Log.Head elsewhere (every record also goes to
// slog with its hash) closes that gap; this package does not sign records.
// It does not prune or archive old files, and it records only what callers
// append: the node decides what is audited. Automatic blocks are many and
// cheap, so they go through an Aggregator, which writes at most one record
// per source per period.
package audit
