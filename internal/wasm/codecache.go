package wasm

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"sync"
	"unsafe"

	"github.com/tetratelabs/wazero"
)

// CodeKey is wazero's name for one module's compiled code: a hash of the
// module's bytes, the wazero version and the CPU's features.
type CodeKey = [32]byte

// CompiledCode is one module's compiled machine code as wazero serializes it.
type CompiledCode struct {
	Key   CodeKey
	Bytes []byte
}

// CodeCache holds compiled code in memory, so that one process compiles a
// module and another loads the result instead of compiling it again: the
// sandbox compiles each version once, in a worker under a deadline, and
// hands the code to the workers that serve it. Compiling with an engine
// that has a CodeCache records the new code (Take returns it); compiling a
// module whose code was Put loads it. Safe for concurrent use.
type CodeCache struct {
	mu       sync.Mutex
	entries  map[CodeKey][]byte
	added    []CompiledCode
	compiled uint64
}

// NewCodeCache returns an empty cache.
func NewCodeCache() *CodeCache { return &CodeCache{entries: map[CodeKey][]byte{}} }

// Put makes c's code available to the next compilation of its module.
func (c *CodeCache) Put(code CompiledCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[code.Key] = code.Bytes
}

// Forget drops a key's code, once the engine has loaded it (the engine
// keeps its own copy while the module is open).
func (c *CodeCache) Forget(key CodeKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

// Take returns the code compiled since the last Take and forgets it.
func (c *CodeCache) Take() []CompiledCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.added
	c.added = nil
	for _, a := range out {
		delete(c.entries, a.Key)
	}
	return out
}

// Compiled counts the modules the engine compiled rather than loaded.
func (c *CodeCache) Compiled() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.compiled
}

// Get, Add and Delete make CodeCache wazero's internal filecache.Cache.

// Get implements wazero's cache.
func (c *CodeCache) Get(key CodeKey) (io.ReadCloser, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.entries[key]
	if !ok {
		return nil, false, nil
	}
	return io.NopCloser(bytes.NewReader(b)), true, nil
}

// Add implements wazero's cache: wazero calls it once it has compiled a
// module.
func (c *CodeCache) Add(key CodeKey, content io.Reader) error {
	b, err := io.ReadAll(content)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.compiled++
	c.entries[key] = b
	c.added = append(c.added, CompiledCode{Key: key, Bytes: b})
	return nil
}

// Delete implements wazero's cache: wazero calls it for code of another
// wazero version.
func (c *CodeCache) Delete(key CodeKey) error {
	c.Forget(key)
	return nil
}

// withCodeCache returns a wazero compilation cache backed by c. wazero
// offers a cache in memory (private to the process) or in a directory
// (which a worker, with no filesystem, cannot use), and no way to plug in
// another; its cache keeps the store it uses in an unexported field of an
// internal interface type, which c implements. Setting that field is the
// one place this package reaches into wazero: the check below fails the
// engine's start, never silently, if a wazero upgrade changes the field.
func withCodeCache(c *CodeCache) (wazero.CompilationCache, error) {
	cc := wazero.NewCompilationCache()
	v := reflect.ValueOf(cc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("wazero's compilation cache is a %T, not a struct pointer", cc)
	}
	f := v.Elem().FieldByName("fileCache")
	if !f.IsValid() || f.Kind() != reflect.Interface || !reflect.TypeOf(c).Implements(f.Type()) {
		return nil, fmt.Errorf("wazero's compilation cache has no fileCache field that %T implements", c)
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(c))
	return cc, nil
}
