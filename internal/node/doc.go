// Package node is the aegis daemon's core: it ties the configuration, the
// durable state store and the kernel shield together and carries out the
// control operations that the admin API exposes — adding and removing list
// entries under the capacity limits and the lockout guard, switching modes,
// reconciling the store with the kernel maps on start and sweeping expired
// entries.
//
// It is not the transport: the HTTP/JSON admin API lives in package admin and
// the command line in cmd/aegis.
package node
