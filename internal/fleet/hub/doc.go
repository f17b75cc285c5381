// Package hub is the fleet's NATS side: an embedded nats-server with
// JetStream (or a connection to an existing JetStream cluster), the
// buckets, and the Publisher operators and the controller write through.
//
// # Buckets
//
// One KV bucket, Bucket, holds every signed change record under its
// storage key (change.KeyFor): list entries, rate settings and function
// routes alike, history 1. A deletion is a signed tombstone written with
// Put like any change; KV deletes and purges are not used by aegis, and
// edges ignore them. Function modules live in the object store
// ModuleBucket, named by their hex SHA-256, which the function change
// signs.
//
// One bucket rather than one per kind gives an edge one stream, one
// revision cursor and one watcher: catch-up and gap detection are a
// single sequence comparison.
//
// # Reports
//
// The stream ReportStream holds edges' automatic-block reports, each on
// ReportSubject(edge name), for ReportAge(window) and a byte limit;
// EnsureReports creates it (Open does). The controller
// (internal/fleet/controller) reads it; edges (internal/fleet/report)
// write to their own subject only.
//
// # Publishing
//
// Publisher.Publish writes a record only over an older one (compare and
// swap on the key's revision) and returns the revision the hub
// acknowledged; PublishMany does the same for an import with pipelined
// conditional writes. PutModule stores a module before the function
// change that names it.
//
// # Access
//
// Options.Users makes the embedded server require a user: edges
// (RoleEdge) may only read the bucket and the module store, and write
// their own edge report and auto-block reports (EdgePermissions);
// publishers may write. Options.TLS requires TLS of
// clients (mutual with client CAs), Options.ClusterTLS of routes. The
// hub's own connection is in-process.
//
// # Tombstones and the watermark
//
// CompactTombstones removes old signed deletions and records the highest
// removed revision in the stream's metadata (MetaCompacted); an edge
// whose cursor is below it reconciles fully instead of catching up.
package hub
