;; hello writes a fixed CGI response. It is the smallest edge function:
;; one WASI import, its memory exported as "memory", and _start.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: {ptr 16, len 55}; the number written goes to 8.
  (data (i32.const 0) "\10\00\00\00\37\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain; charset=utf-8\n\nHello, world!\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
