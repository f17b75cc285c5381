;; imports a global, which no host module provides.
(module
  (import "aegis" "secret" (global i32))
  (memory (export "memory") 1)
  (func (export "_start")))
