// Package config loads and validates the YAML configuration of `aegis node`.
//
// It is for turning a file (or the embedded defaults) into a fully defaulted,
// validated [Config]. Parsing is strict: unknown keys, wrong types, multiple
// YAML documents, YAML aliases and files larger than [MaxFileSize] are
// rejected, and every error names the offending key as a dotted path such as
// "shield.limits.ipv4".
//
// It is not for runtime state: settings changed through the admin socket are
// persisted by package store, and this package never writes files. It also
// does not touch the system (interfaces, bpffs); it only checks that values
// are well formed.
package config
