module hato/benchkit

go 1.21
