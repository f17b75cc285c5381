// Package node is the aegis daemon's core: it ties the configuration, the
// durable state store and the kernel shield together and carries out the
// control operations that the admin API exposes — adding and removing list
// entries under the capacity limits and the lockout guard, switching modes,
// reconciling the store with the kernel maps on start and sweeping expired
// entries.
//
// Every change to a list or to the settings — from an operator, expiry,
// start-up or, later, a fleet hub — goes through one path, commit
// (change.go): validated first (package lists), then audited, stored in one
// transaction and synced to the kernel. The kernel is the store's copy: a
// failed sync marks the list (or the settings) dirty and the sweeper
// repairs it (reconcile.go). The files split by concern: node.go starts and
// runs the node, lists.go and settings.go are the operations, reconcile.go
// expiry and repair, status.go reports.
//
// It is not the transport: the HTTP/JSON admin API lives in package admin and
// the command line in cmd/aegis.
package node
