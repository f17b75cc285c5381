;; growok asks for too much memory once, sees -1, and answers anyway: a
;; refused grow alone is not an error.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\1f\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain\n\ngrow\n")
  (func (export "_start")
    (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
