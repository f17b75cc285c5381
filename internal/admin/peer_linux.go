package admin

import (
	"net"

	"github.com/aegis-edge/aegis/internal/node"
	"golang.org/x/sys/unix"
)

// peerActor is the uid and pid of the process at the other end of a unix
// socket (SO_PEERCRED): the actor recorded for its changes.
func peerActor(c net.Conn) node.Actor {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return node.Actor{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return node.Actor{}
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return node.Actor{}
	}
	return node.Actor{UID: int(cred.Uid), PID: int(cred.Pid)}
}
