;; hostcall_once makes one host call sized by its request body: 8 bytes,
;; a selector (0 random_get, 1 fd_write to stderr) and a length, both
;; little-endian i32. Tests compare the fuel it uses for two lengths.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 64)
  ;; iovec for the read: 8 bytes at 16.
  (data (i32.const 0) "\10\00\00\00\08\00\00\00")
  (func (export "_start")
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)))
    (if (i32.eqz (i32.load (i32.const 16)))
      (then (drop (call $random_get (i32.const 64) (i32.load (i32.const 20)))))
      (else
        ;; iovec for the write at 40: [64, length).
        (i32.store (i32.const 40) (i32.const 64))
        (i32.store (i32.const 44) (i32.load (i32.const 20)))
        (drop (call $fd_write (i32.const 2) (i32.const 40) (i32.const 1) (i32.const 32)))))))
