//go:build !linux

package vboard

import "syscall"

// dieWithParent has no portable equivalent of Linux's parent-death signal.
func dieWithParent() *syscall.SysProcAttr { return nil }
