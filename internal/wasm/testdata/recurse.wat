;; recurse counts down a billion frames deep: fuel runs out first.
(module
  (memory (export "memory") 1)
  (func $down (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 0))
      (else (i64.add (i64.const 1) (call $down (i64.sub (local.get $n) (i64.const 1)))))))
  (func (export "_start") (drop (call $down (i64.const 1000000000)))))
