;; imports its memory instead of defining it.
(module
  (import "aegis" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "_start")))
