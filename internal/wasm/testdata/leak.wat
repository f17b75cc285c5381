;; leak: reports whether its memory holds what an earlier instance left,
;; then leaves something. The response body is two characters, one for a
;; word in its initial page and one for a word in a page it grows: '0'
;; when the word is zero, '1' when not. With a request body starting with
;; 't' it traps after leaving its marks, without answering. However the
;; earlier instances ended, the next one must answer "00": memories are
;; never shared or left dirty.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1 4)
  (data (i32.const 16) "Content-Type: text/plain\n\nxx")
  (func $flag (param $addr i32) (result i32)
    (select (i32.const 0x31) (i32.const 0x30) (i32.load (local.get $addr))))
  (func (export "_start")
    (drop (memory.grow (i32.const 1)))
    (i32.store8 (i32.const 42) (call $flag (i32.const 60000)))
    (i32.store8 (i32.const 43) (call $flag (i32.const 100000)))
    (i32.store (i32.const 60000) (i32.const 0xdeadbeef))
    (i32.store (i32.const 100000) (i32.const 0xdeadbeef))
    ;; one byte of the body into 64, through an iovec at 0
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (i32.eq (i32.load8_u (i32.const 64)) (i32.const 0x74)) (then unreachable))
    ;; the response: 28 bytes from 16
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 28))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
)
