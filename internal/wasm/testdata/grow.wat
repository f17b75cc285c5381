;; grow is a memory.grow bomb: one page at a time until refused, then it
;; traps as most guests do when allocation fails.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
