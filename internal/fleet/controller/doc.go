// Package controller is the hub's fleet controller: it reads the edges'
// automatic-block reports (internal/fleet/report, on the stream
// hub.ReportStream) and, when enough distinct edges report the same
// source within a window, publishes a fleet block for it, signed by the
// controller key, which edges accept for exactly this
// (change.Policy.Controller).
//
// # Rules
//
//   - A report's edge is the last token of its subject, which bus
//     permissions tie to the edge's user (hub.EdgePermissions); a payload
//     naming another edge is ignored (edge_mismatch).
//   - A report counts from its time (the edge's, but never later than the
//     hub's arrival time) for Options.Window; one arriving already older,
//     or after the edge's own block expired, is ignored (stale).
//   - When Options.MinEdges distinct edges have reported a source within
//     the window, the controller publishes a blocklist put for it that
//     expires Options.TTL later (never beyond Options.MaxTTL), with the
//     reason "auto-block: reported by N edges".
//   - It never promotes a prefix broader than /24 (IPv4) or /48 (IPv6):
//     such reports are ignored (too_broad).
//   - It reads the key first, under the Publisher's compare and swap
//     (hub.Publisher.PublishIf): an operator's live entry for the key, or
//     an operator's deletion less than a TTL old, stands (ignored as
//     operator); its own promotion is extended only once less than half
//     its TTL is left, so further reports do not republish it.
//
// # Restarts
//
// The controller keeps no state of its own: on start it re-reads the
// reports of the last window from the stream (an ordered consumer from
// now - Window), which rebuilds exactly what it needs, and its past
// promotions are on the hub, where the read-first rule finds them. A
// durable consumer would add server-side state without saving the
// re-read: the per-source counts live in memory and would be lost anyway.
//
// # Memory
//
// It tracks at most Options.MaxSources sources (the least recently
// reported go first, counted in Stats.Evicted), per source at most
// MinEdges edges (the oldest reports go first), and forgets a source
// once its last report has left the window.
package controller
