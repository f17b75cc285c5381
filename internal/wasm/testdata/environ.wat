;; environ: answers with its environment as environ_get copies it (every
;; variable followed by a NUL). With a request body starting with 'f' it
;; asks for the environment at addresses past the end of memory instead
;; and answers with the two calls' errno values, each as one character
;; '0' + errno.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Content-Type: text/plain\n\n")
  (func (export "_start")
    ;; one byte of the body into 64, through an iovec at 0
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; iovecs at 0: the header (16, 26), then the body
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 26))
    (if (i32.eq (i32.load8_u (i32.const 64)) (i32.const 0x66))
      (then
        (i32.store8 (i32.const 96)
          (i32.add (i32.const 0x30) (call $sizes (i32.const 65534) (i32.const 128))))
        (i32.store8 (i32.const 97)
          (i32.add (i32.const 0x30) (call $get (i32.const 1024) (i32.const 65530))))
        (i32.store (i32.const 8) (i32.const 96))
        (i32.store (i32.const 12) (i32.const 2)))
      (else
        (drop (call $sizes (i32.const 128) (i32.const 132)))
        (drop (call $get (i32.const 1024) (i32.const 4096)))
        (i32.store (i32.const 8) (i32.const 4096))
        (i32.store (i32.const 12) (i32.load (i32.const 132)))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 136))))
)
