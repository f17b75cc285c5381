;; tables is the issue's 65-byte module: two tables of 2^27 funcrefs, 1 GiB
;; each in wazero, and no code to speak of.
(module
  (memory (export "memory") 1)
  (table 134217728 funcref)
  (table 134217728 funcref)
  (func (export "_start")))
