;; The lab's edge function: answers every request with a short greeting.
;; It only needs fd_write; the CGI response goes to stdout.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; One iovec at 0 pointing at the response at 32; fd_write stores the
  ;; byte count at 16.
  (data (i32.const 0) "\20\00\00\00\45\00\00\00")
  (data (i32.const 32) "Content-Type: text/plain\nCache-Control: no-store\n\nhello from the lab\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
