;; write_flood is the variant that writes all of its memory to stderr,
;; forever: one iovec of 4 MiB at offset 0 (the iovec is its first bytes).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (data (i32.const 0) "\00\00\00\00\00\00\40\00")
  (func (export "_start")
    (loop $forever
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $forever))))
