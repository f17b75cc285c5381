;; random_flood asks random_get for all of its 4 MiB memory, forever.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 64)
  (func (export "_start")
    (loop $forever
      (drop (call $random_get (i32.const 0) (i32.const 4194304)))
      (br $forever))))
