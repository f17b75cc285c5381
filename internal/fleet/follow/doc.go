// Package follow is an edge's follower of the fleet: it watches the hub's
// change bucket, verifies every record (change.Verifier), drops what is
// not newer than what the edge applied, and hands the rest in batches to
// an Applier — the node's change pipeline, or a Recorder in tests and
// lightweight benchmark edges.
//
// # What it remembers
//
// State (kept by the node in its store) holds, per storage key, the issue
// time last applied and whether it was a delete, and a Cursor: the
// stream's identity (its creation time, the epoch) and the last revision
// applied. The Applier runs first and State.Commit after it, so a crash
// between them resends the batch: applying is idempotent. An Applier that
// is a Committer (the node) saves the State itself, in the transaction
// that stores the batch's last entries, so a batch is one write to disk.
//
// # Catch-up and full reconcile
//
// A session starts by reading the stream. If the epoch matches, the hub
// is not behind the cursor and the compaction watermark (hub.MetaCompacted)
// is not beyond it, the follower resumes at cursor+1: only what changed
// since comes back. Revisions missing in between were superseded (the
// bucket keeps one per key) and their successors are delivered, so a gap
// in revisions alone is no reason to reconcile. Otherwise — first start,
// recreated bucket, hub behind the edge, tombstones removed that the edge
// had not seen — it reconciles fully: it reads every key's latest record,
// applies the newer ones, and deletes (Change.Reconciled) each key the
// edge holds live that the hub no longer has. The cursor moves only once
// the snapshot is complete. A reconnect ends the session, so the next
// one re-reads the stream; so does a periodic look (Options.Recheck)
// that finds the bucket recreated, or tombstones compacted beyond where
// the edge was at its previous look.
//
// KV delete and purge markers are not changes: they are counted as
// ignored and never delete anything, except that a full reconcile, by
// design, trusts the hub's absence of a key.
package follow
