module aegis.test/goprog

go 1.26
