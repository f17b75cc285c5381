;; memory_fill grows memory to 64 pages (4 MiB) and fills all of it, forever.
(module
  (memory (export "memory") 64)
  (func (export "_start")
    (loop $forever
      (memory.fill (i32.const 0) (i32.const 255) (i32.const 4194304))
      (br $forever))))
