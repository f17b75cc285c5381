;; log_flood is the variant through the host module: a 64 KiB log line
;; (read in full, though logged cut short), forever.
(module
  (import "aegis" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (loop $forever
      (drop (call $log (i32.const 1) (i32.const 0) (i32.const 65536) (i32.const 0) (i32.const 0)))
      (br $forever))))
