;; tables_externref is the variant with one externref table just over the
;; test's memory limit of 64 pages (4 MiB at 16 bytes an element).
(module
  (memory (export "memory") 1)
  (table 262145 externref)
  (func (export "_start")))
