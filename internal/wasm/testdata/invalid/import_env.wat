;; imports a function from a module other than WASI and aegis.
(module
  (import "env" "now" (func (result i64)))
  (memory (export "memory") 1)
  (func (export "_start")))
