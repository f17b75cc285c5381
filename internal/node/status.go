package node

import (
	"slices"

	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
)

// MapFill is one list family's use against its limit.
type MapFill struct {
	List    lists.List `json:"list"`
	Family  string     `json:"family"`
	Entries int        `json:"entries"`
	Limit   int        `json:"limit"`
}

// Status is what `aegis shield status` shows.
type Status struct {
	Interfaces []shield.AttachInfo `json:"interfaces"`
	Settings   shield.Settings     `json:"settings"`
	Clock      shield.ClockInfo    `json:"clock"`
	Maps       []MapFill           `json:"maps"`
	AutoBlocks int                 `json:"auto_blocks"`
	Counters   map[string]Counter  `json:"counters"`
	Recent     []shield.AutoBlock  `json:"recent_auto_blocks,omitempty"`
	// Dirty names what the kernel holds out of date with the store (a
	// list, or "settings") until the sweeper repairs it.
	Dirty []string `json:"dirty,omitempty"`
}

// Counter is a reason's traffic: what was done and, in monitor mode, what
// would have been dropped.
type Counter struct {
	Packets          uint64 `json:"packets"`
	Bytes            uint64 `json:"bytes"`
	MonitoredPackets uint64 `json:"monitored_packets,omitempty"`
	MonitoredBytes   uint64 `json:"monitored_bytes,omitempty"`
}

// Status reports interfaces, settings, map fill and counters.
func (n *Node) Status() (Status, error) {
	st := Status{Settings: n.shield.Settings(), Clock: n.shield.Clock(), Counters: map[string]Counter{}}
	ifs, err := n.shield.Attached()
	if err != nil {
		return st, err
	}
	st.Interfaces = ifs
	for _, l := range lists.All() {
		v4, v6, err := n.store.Count(l)
		if err != nil {
			return st, err
		}
		n.mu.Lock()
		limit := n.capacity(l)
		n.mu.Unlock()
		st.Maps = append(st.Maps, MapFill{l, "ipv4", v4, limit.V4}, MapFill{l, "ipv6", v6, limit.V6})
	}
	st.Dirty = n.dirtyCopies()
	auto, err := n.shield.AutoBlocks()
	if err != nil {
		return st, err
	}
	st.AutoBlocks = len(auto)
	c, err := n.shield.Counters()
	if err != nil {
		return st, err
	}
	for _, r := range shield.Reasons() {
		v, m := c.Verdicts[r], c.Monitored[r]
		st.Counters[r.String()] = Counter{v.Packets, v.Bytes, m.Packets, m.Bytes}
	}
	n.eventsMu.Lock()
	st.Recent = slices.Clone(n.events)
	n.eventsMu.Unlock()
	return st, nil
}
