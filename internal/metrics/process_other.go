//go:build !linux

package metrics

// registerProcess adds nothing: the process metrics come from /proc, which only Linux has.
func registerProcess(*Registry) {}
