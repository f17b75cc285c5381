;; table_grow_loop grows a table whose maximum fits the memory limit one
;; element at a time, forever: grows fail at the maximum, fuel stops it.
(module
  (memory (export "memory") 1)
  (table 0 131072 funcref)
  (func (export "_start")
    (loop $forever
      (drop (table.grow 0 (ref.null func) (i32.const 1)))
      (br $forever))))
