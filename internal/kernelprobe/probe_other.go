//go:build !linux

package kernelprobe

import "errors"

var errNotLinux = errors.New("kernel probes need Linux")

func kernelRelease() string { return "unknown" }

func probeUnavailable() (bool, string, error) { return false, "", errNotLinux }

var (
	probeXDP              = probeUnavailable
	probeXDPLink          = probeUnavailable
	probeRingBuf          = probeUnavailable
	probeLPMTrie          = probeUnavailable
	probeLRUMaps          = probeUnavailable
	probeKtimeBootNs      = probeUnavailable
	probeJiffies64        = probeUnavailable
	probeCapBPF           = probeUnavailable
	probeMemcg            = probeUnavailable
	probeLandlock         = probeUnavailable
	probeSeccompTSYNC     = probeUnavailable
	probeSeccompUserNotif = probeUnavailable
	probeCgroupV2         = probeUnavailable
)

// HaveXDPLink fails: there is no XDP here.
func HaveXDPLink() error { return errNotLinux }
