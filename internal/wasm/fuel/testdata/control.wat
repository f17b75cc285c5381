;; Every control construct, each in a function that computes something.
(module
  (type $binop (func (param i32 i32) (result i32)))
  (table $t 4 funcref)
  (elem (table $t) (i32.const 0) func $add $sub $mul $pair_sum)

  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $binop) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $binop) (i32.mul (local.get 0) (local.get 1)))
  (func $pair_sum (type $binop)
    (call $add (call $swap (local.get 0) (local.get 1))))

  ;; Multi-value function result.
  (func $swap (param i32 i32) (result i32 i32)
    (local.get 1) (local.get 0))

  ;; call_indirect through the table: op selects the function.
  (func (export "dispatch") (param $op i32) (param $a i32) (param $b i32) (result i32)
    (call_indirect $t (type $binop) (local.get $a) (local.get $b) (local.get $op)))

  ;; block and loop with params and results (multi-value block types).
  (func (export "multivalue") (param $n i32) (result i32)
    (local $i i32)
    (i32.const 0) (i32.const 1)
    (loop $l (param i32 i32) (result i32 i32)
      ;; (a, b) -> (b, a+b)
      (call $swap)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (block (param i32 i32) (result i32 i32)
        (local.set $i (local.get $i))
        (call $sub (i32.const 0) (i32.const 0)) (drop))
      ;; stack: b a ; make (b, a+b)
      (block $done (param i32 i32) (result i32 i32)
        (local.set $n (local.get $n))
        (call $swap) (call $pair_sum_keep)
        (br_if $l (i32.lt_u (local.get $i) (local.get $n)))))
    (drop))

  ;; (a, b) -> (a, a+b) keeping the first value.
  (func $pair_sum_keep (param $x i32) (param $y i32) (result i32 i32)
    (local.get $y) (i32.add (local.get $x) (local.get $y)))

  ;; if/else with params and results.
  (func (export "ifelse") (param $x i32) (result i32)
    (i32.const 10)
    (if (param i32) (result i32) (i32.gt_s (local.get $x) (i32.const 5))
      (then (i32.mul (local.get $x)))
      (else (i32.sub (local.get $x)))))

  ;; if without else, br out of an if, return from nested blocks.
  (func (export "classify") (param $x i32) (result i32)
    (local $r i32)
    (block $out
      (if (i32.eqz (local.get $x)) (then (local.set $r (i32.const 100)) (br $out)))
      (if (i32.lt_s (local.get $x) (i32.const 0))
        (then (return (i32.const -1))))
      (block $inner
        (br_if $inner (i32.gt_s (local.get $x) (i32.const 1000)))
        (local.set $r (i32.const 1))
        (br $out))
      (local.set $r (i32.const 2)))
    (local.get $r))

  ;; br_table with a default, inside a loop.
  (func (export "switch") (param $n i32) (result i32)
    (local $acc i32) (local $i i32)
    (loop $next
      (block $d (block $c (block $b (block $a
        (br_table $a $b $c $d (i32.rem_u (local.get $i) (i32.const 5))))
        (local.set $acc (i32.add (local.get $acc) (i32.const 1))) (br $d))
        (local.set $acc (i32.mul (local.get $acc) (i32.const 3))) (br $d))
        (local.set $acc (i32.xor (local.get $acc) (i32.const 0x55))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))

  ;; br_table carrying a value out of the block.
  (func (export "table_value") (param $k i32) (result i32)
    (block $x (result i32)
      (block $y (result i32)
        (br_table $x $y $x (i32.const 7) (local.get $k)))
      (i32.add (i32.const 100))))

  ;; Nested loops, select and typed select.
  (func (export "nested") (param $n i32) (result i64)
    (local $i i32) (local $j i32) (local $s i64)
    (loop $outer
      (local.set $j (i32.const 0))
      (loop $inner
        (local.set $s (i64.add (local.get $s)
          (select (i64.extend_i32_u (local.get $i)) (i64.extend_i32_u (local.get $j))
            (i32.lt_u (local.get $i) (local.get $j)))))
        (local.set $s (select (result i64) (i64.mul (local.get $s) (i64.const 3)) (local.get $s)
          (i32.and (local.get $j) (i32.const 1))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $inner (i32.lt_u (local.get $j) (local.get $n))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $s))

  ;; Code after unconditional branches and unreachable (dead code).
  (func (export "deadcode") (param $x i32) (result i32)
    (block $b (result i32)
      (br $b (i32.add (local.get $x) (i32.const 1)))
      (drop (i32.const 5))
      (loop (br 0))
      (i32.const 9))
    (if (result i32) (i32.eqz (local.get $x))
      (then (return (i32.const 42)) (unreachable))
      (else (i32.const 1)))
    (i32.add))

  ;; Recursion (mutual), a call tree.
  (func $even (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 1))
      (else (call $odd (i32.sub (local.get $n) (i32.const 1))))))
  (func $odd (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
      (else (call $even (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "is_even") (param i32) (result i32) (call $even (local.get 0)))

  ;; A loop with a value-carrying br_if out of a block.
  (func (export "find_first_multiple") (param $start i32) (param $m i32) (result i32)
    (block $found (result i32)
      (loop $l
        (br_if $found (local.get $start)
          (i32.eqz (i32.rem_u (local.get $start) (local.get $m))))
        (local.set $start (i32.add (local.get $start) (i32.const 1)))
        (br $l))
      (i32.const -1)))
)
