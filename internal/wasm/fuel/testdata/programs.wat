;; Small programs that compute something, for results and fuel counts.
(module
  (memory 2)

  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add
        (call $fib (i32.sub (local.get $n) (i32.const 1)))
        (call $fib (i32.sub (local.get $n) (i32.const 2)))))))

  ;; Number of primes below n (n <= 131072), sieve of Eratosthenes.
  (func (export "primes") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get $n))
    (local.set $i (i32.const 2))
    (block $done
      (loop $outer
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.load8_u (local.get $i))
          (then
            (local.set $count (i32.add (local.get $count) (i32.const 1)))
            (local.set $j (i32.mul (local.get $i) (local.get $i)))
            (block $skip
              (loop $inner
                (br_if $skip (i32.ge_u (local.get $j) (local.get $n)))
                (i32.store8 (local.get $j) (i32.const 0))
                (local.set $j (i32.add (local.get $j) (local.get $i)))
                (br $inner)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.get $count))

  ;; Longest Collatz chain start below n.
  (func (export "collatz") (param $n i64) (result i64)
    (local $start i64) (local $x i64) (local $len i64) (local $best i64) (local $bestStart i64)
    (local.set $start (i64.const 1))
    (loop $each
      (local.set $x (local.get $start))
      (local.set $len (i64.const 1))
      (block $end
        (loop $step
          (br_if $end (i64.eq (local.get $x) (i64.const 1)))
          (local.set $x
            (if (result i64) (i64.eqz (i64.and (local.get $x) (i64.const 1)))
              (then (i64.shr_u (local.get $x) (i64.const 1)))
              (else (i64.add (i64.mul (local.get $x) (i64.const 3)) (i64.const 1)))))
          (local.set $len (i64.add (local.get $len) (i64.const 1)))
          (br $step)))
      (if (i64.gt_u (local.get $len) (local.get $best))
        (then (local.set $best (local.get $len)) (local.set $bestStart (local.get $start))))
      (local.set $start (i64.add (local.get $start) (i64.const 1)))
      (br_if $each (i64.lt_u (local.get $start) (local.get $n))))
    (local.get $bestStart))

  ;; Fill n i32s with a pseudo-random sequence, insertion-sort them and
  ;; return a checksum of the sorted order.
  (func (export "sort") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $seed i32) (local $v i32) (local $sum i32)
    (local.set $seed (i32.const 12345))
    (loop $gen
      (local.set $seed (i32.add (i32.mul (local.get $seed) (i32.const 1103515245)) (i32.const 12345)))
      (i32.store (i32.shl (local.get $i) (i32.const 2)) (i32.shr_u (local.get $seed) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $gen (i32.lt_u (local.get $i) (local.get $n))))
    (local.set $i (i32.const 1))
    (block $sorted
      (loop $outer
        (br_if $sorted (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $v (i32.load (i32.shl (local.get $i) (i32.const 2))))
        (local.set $j (local.get $i))
        (block $placed
          (loop $shift
            (br_if $placed (i32.eqz (local.get $j)))
            (br_if $placed (i32.le_u
              (i32.load (i32.shl (i32.sub (local.get $j) (i32.const 1)) (i32.const 2))) (local.get $v)))
            (i32.store (i32.shl (local.get $j) (i32.const 2))
              (i32.load (i32.shl (i32.sub (local.get $j) (i32.const 1)) (i32.const 2))))
            (local.set $j (i32.sub (local.get $j) (i32.const 1)))
            (br $shift)))
        (i32.store (i32.shl (local.get $j) (i32.const 2)) (local.get $v))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.set $i (i32.const 0))
    (loop $check
      (local.set $sum (i32.add (i32.mul (local.get $sum) (i32.const 31))
        (i32.load (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $check (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $sum))

  ;; Straight-line code: exactly three instructions.
  (func (export "three") (result i32)
    (i32.add (i32.const 1) (i32.const 2)))

  ;; A loop of n iterations with a constant cost each.
  (func (export "count") (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $i))
)
