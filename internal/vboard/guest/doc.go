// Package guest holds the virtual board's own in-guest tests (build tag vboardguest): kernel
// sanity checks that the drivers the device tests rely on are there, and that the harness
// works end to end. They call the kernel's uAPI directly, so they depend on no device package.
package guest
