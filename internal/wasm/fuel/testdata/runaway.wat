;; Programs that never finish on their own.
(module
  (import "env" "tick" (func $tick))

  (func (export "spin")
    (loop $forever (br $forever)))

  ;; An infinite loop whose only instruction is a call to the host.
  (func (export "host_spin")
    (loop $forever (call $tick) (br $forever)))

  (func $recurse (export "recurse") (param $n i64) (result i64)
    (i64.add (call $recurse (i64.add (local.get $n) (i64.const 1))) (i64.const 1)))

  ;; f(n) = f(n-1) + f(n-1), f(0) = 1: 2^n calls and not a single loop.
  (func $tree (export "tree") (param $n i32) (result i64)
    (if (result i64) (i32.eqz (local.get $n))
      (then (i64.const 1))
      (else (i64.add
        (call $tree (i32.sub (local.get $n) (i32.const 1)))
        (call $tree (i32.sub (local.get $n) (i32.const 1)))))))
)
