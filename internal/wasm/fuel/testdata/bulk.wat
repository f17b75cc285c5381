;; Bulk memory, tables and reference types (0xfc, 0xd0-0xd2, 0x25/0x26),
;; sign extension and saturating truncation.
(module
  (type $unary (func (param i32) (result i32)))
  (memory 1 4)
  (table $funcs 2 10 funcref)
  (table $ext 4 externref)
  (data $greeting "hello, fuel")
  (elem $fns func $double $square $negate)
  (elem declare func $triple)

  (func $double (type $unary) (i32.shl (local.get 0) (i32.const 1)))
  (func $square (type $unary) (i32.mul (local.get 0) (local.get 0)))
  (func $negate (type $unary) (i32.sub (i32.const 0) (local.get 0)))
  (func $triple (type $unary) (i32.mul (local.get 0) (i32.const 3)))

  ;; memory.init, memory.copy, memory.fill, data.drop; returns a checksum.
  (func (export "memory") (param $fill i32) (result i32)
    (local $i i32) (local $sum i32)
    (memory.init $greeting (i32.const 16) (i32.const 0) (i32.const 11))
    (memory.copy (i32.const 64) (i32.const 16) (i32.const 11))
    (memory.fill (i32.const 80) (i32.const 0x2a) (local.get $fill))
    (data.drop $greeting)
    (loop $l
      (local.set $sum (i32.add (i32.mul (local.get $sum) (i32.const 31))
        (i32.load8_u (i32.add (local.get $i) (i32.const 16)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $fill) (i32.const 64)))))
    (local.get $sum))

  ;; memory.fill whose length is the argument: charged per 16 bytes.
  (func (export "fill") (param $n i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get $n)))

  ;; table.fill whose length is the argument: charged per element.
  (func (export "table_fill") (param $n i32)
    (table.fill $funcs (i32.const 0) (ref.func $triple) (local.get $n)))

  ;; table.grow whose length is the argument: charged 4 units an element.
  (func (export "table_grow") (param $n i32) (result i32)
    (table.grow $ext (ref.null extern) (local.get $n)))

  ;; memory.grow and memory.size.
  (func (export "grow") (param $pages i32) (result i32)
    (i32.add (memory.grow (local.get $pages)) (i32.mul (memory.size) (i32.const 1000))))

  ;; table.init, elem.drop, table.grow, table.size, table.copy, table.get,
  ;; table.set, ref.func, ref.null, ref.is_null, call_indirect.
  (func (export "tables") (param $x i32) (result i32)
    (local $r i32)
    (drop (table.grow $funcs (ref.null func) (i32.const 2)))
    (table.init $funcs $fns (i32.const 0) (i32.const 0) (i32.const 3))
    (elem.drop $fns)
    (table.copy $funcs $funcs (i32.const 3) (i32.const 0) (i32.const 1))
    (table.set $funcs (i32.const 1) (ref.func $triple))
    (local.set $r (i32.add
      (call_indirect $funcs (type $unary) (local.get $x) (i32.const 3))
      (call_indirect $funcs (type $unary) (local.get $x) (i32.const 1))))
    (local.set $r (i32.add (local.get $r)
      (i32.mul (table.size $funcs) (i32.const 100))))
    (local.set $r (i32.add (local.get $r)
      (ref.is_null (table.get $funcs (i32.const 2)))))
    (local.set $r (i32.add (local.get $r)
      (ref.is_null (table.get $ext (i32.const 0)))))
    (table.set $ext (i32.const 1) (ref.null extern))
    (local.get $r))

  ;; Sign extension and saturating truncation.
  (func (export "numeric") (param $x i32) (result i64)
    (i64.add
      (i64.add (i64.extend_i32_s (i32.extend8_s (local.get $x)))
        (i64.extend32_s (i64.extend_i32_u (local.get $x))))
      (i64.add (i64.extend_i32_s (i32.trunc_sat_f32_s (f32.const 1e20)))
        (i64.add (i64.trunc_sat_f64_u (f64.const -5))
          (i64.extend_i32_s (i32.extend16_s (i32.const 0x8001)))))))
)
