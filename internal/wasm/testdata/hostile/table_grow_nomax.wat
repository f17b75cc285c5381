;; table_grow_nomax starts with an empty table and grows it by 2^20 elements
;; at a time: a table that table.grow targets must declare a maximum.
(module
  (memory (export "memory") 1)
  (table 0 funcref)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (table.grow 0 (ref.null func) (i32.const 1048576)) (i32.const -1))))))
