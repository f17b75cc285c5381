;; table_grow_fill is the variant that grows an externref table to its
;; maximum in one step, then fills it whole in a loop.
(module
  (memory (export "memory") 1)
  (table 0 131072 externref)
  (func (export "_start")
    (drop (table.grow 0 (ref.null extern) (i32.const 131072)))
    (loop $forever
      (table.fill 0 (i32.const 0) (ref.null extern) (i32.const 131072))
      (br $forever))))
