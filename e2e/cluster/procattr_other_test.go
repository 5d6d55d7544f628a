//go:build !linux

package cluster

import "syscall"

// procAttr: only Linux can tie an instance's life to the test process's.
func procAttr() *syscall.SysProcAttr { return nil }
