;; table_grow_bigmax declares a maximum, 2^27 elements (2 GiB at 16 bytes
;; an element), far over the memory limit it counts against.
(module
  (memory (export "memory") 1)
  (table 0 134217728 externref)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (table.grow 0 (ref.null extern) (i32.const 1048576)) (i32.const -1))))))
