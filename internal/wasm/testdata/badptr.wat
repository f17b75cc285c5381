;; badptr passes kv_get a key far outside its memory.
(module
  (import "aegis" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $kv_get (i32.const 0x7fff0000) (i32.const 16) (i32.const 0) (i32.const 0)))))
