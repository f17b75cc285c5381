package admin

import (
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
)

// Routes of the admin API, in net/http.ServeMux pattern syntax: the server
// registers them with their method and the client fills in their one
// wildcard (see expand). They are the only place a path is spelt.
const (
	pathList         = "/v1/lists/{list}"
	pathListRemove   = "/v1/lists/{list}/remove"
	pathShield       = "/v1/shield"
	pathShieldMode   = "/v1/shield/mode"
	pathShieldRate   = "/v1/shield/rate"
	pathShieldDetach = "/v1/shield/detach"
	pathFunctions    = "/v1/functions"
	pathFunction     = "/v1/functions/{name}"
	pathFunctionLogs = "/v1/functions/{name}/logs"
	pathFleet        = "/v1/fleet"
	pathMetrics      = "/metrics"
)

// Wire types of the admin API, shared by server and client.

// AddRequest is the body of POST /v1/lists/{list}.
type AddRequest struct {
	Targets []string `json:"targets"`
	TTL     string   `json:"ttl,omitempty"` // Go duration; empty or "0" = permanent
	Reason  string   `json:"reason,omitempty"`
	Force   bool     `json:"force,omitempty"`
}

// AddResponse answers an add.
type AddResponse struct {
	Added []node.ListedEntry `json:"added"`
}

// RemoveRequest is the body of POST /v1/lists/{list}/remove.
type RemoveRequest struct {
	Targets []string `json:"targets"`
}

// RemoveResponse answers a removal.
type RemoveResponse struct {
	Removed int `json:"removed"`
}

// ListResponse answers GET /v1/lists/{list}.
type ListResponse struct {
	Entries    []node.ListedEntry `json:"entries"`
	AutoBlocks []shield.AutoBlock `json:"auto_blocks,omitempty"`
}

// ModeRequest is the body of PUT /v1/shield/mode.
type ModeRequest struct {
	Mode string `json:"mode"`
}

// RateRequest is the body of PUT /v1/shield/rate.
type RateRequest struct {
	Class string `json:"class"` // syn, udp or icmp
	PPS   uint32 `json:"pps"`
	Burst uint32 `json:"burst"`
}

// DetachRequest is the body of POST /v1/shield/detach.
type DetachRequest struct {
	Interface string `json:"interface"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// MaxBodyBytes bounds a request body: a million targets fit.
const MaxBodyBytes = 32 << 20

// DeployRequest is the body of PUT /v1/functions/{name}. Module is the
// Wasm binary (base64 in JSON); the other fields override the node's
// function defaults.
type DeployRequest struct {
	Module []byte `json:"module"`
	functions.Spec
}

// FunctionsResponse answers GET /v1/functions.
type FunctionsResponse struct {
	Functions []functions.Info `json:"functions"`
}
