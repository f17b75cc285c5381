;; table_then_memory grows its table to its maximum (131,072 elements, 2 MiB
;; at 16 bytes an element), then memory one page at a time until refused.
;; With the test's limit of 64 pages (4 MiB) memory must stop at 32 pages:
;; then it traps (the memory error); past 32 it returns without an answer.
(module
  (memory (export "memory") 1)
  (table 0 131072 funcref)
  (func (export "_start")
    (drop (table.grow 0 (ref.null func) (i32.const 131072)))
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (if (i32.le_u (memory.size) (i32.const 32))
      (then unreachable))))
