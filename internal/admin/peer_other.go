//go:build !linux

package admin

import (
	"net"

	"github.com/aegis-edge/aegis/internal/node"
)

// peerActor is unknown here: the node, and so this server, runs on Linux.
func peerActor(net.Conn) node.Actor { return node.Actor{} }
