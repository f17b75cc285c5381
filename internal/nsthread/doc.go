// Package nsthread runs a function on an OS thread of its own whose network
// namespace it may change: the thread's namespace is restored afterwards,
// or, if that fails, the thread is thrown away with its goroutine, so no
// other goroutine ever runs in a namespace it did not ask for.
//
// It also prepares the directory named namespaces are bind-mounted in
// (ShareRunDir). It is for code that enters network namespaces (setns
// affects only the calling thread); it does not create or name them.
package nsthread
