;; needs 2000 pages (125 MiB) before running a single instruction.
(module
  (memory (export "memory") 2000)
  (func (export "_start")))
