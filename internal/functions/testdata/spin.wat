;; spin never returns: only its fuel budget stops it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br $l))))
