package bpfguard

// The test corpus: C sources in testdata/src compiled into testdata/*.o, and
// the broken objects derived from them (see internal/mkcorpus).
//go:generate go run ./internal/mkcorpus
