package shield

// Object returns the embedded XDP object (ELF bytes) as bpf2go built it.
func Object() []byte { return _ShieldBytes }
