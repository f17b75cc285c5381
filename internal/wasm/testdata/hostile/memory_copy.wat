;; memory_copy is the variant that copies one half of memory onto the
;; other, forever.
(module
  (memory (export "memory") 64)
  (func (export "_start")
    (loop $forever
      (memory.copy (i32.const 0) (i32.const 2097152) (i32.const 2097152))
      (br $forever))))
