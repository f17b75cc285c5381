// Package lists is the vocabulary of the address lists: their names, how an
// operator's target is parsed (one rule for host bits), what makes an entry
// valid (reason, lifetime), the lockout guard and the capacity check, as
// pure functions over values.
//
// Every layer that speaks about lists — the command line, the admin API,
// the configuration, the state store, the shield and the node — uses this
// package, so a rule is written and tested once. It imports only the
// standard library.
//
// It is not where changes happen: package node applies a change (audit,
// store, kernel), package store keeps entries durable and package shield
// holds them in the kernel maps.
package lists
