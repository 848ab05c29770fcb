module github.com/example/go-getting-started

go 1.22

toolchain go1.22.12
