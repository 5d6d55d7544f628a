//go:build !linux

package testredis

import "syscall"

// procAttr: only Linux can tie the server's life to the test process's.
func procAttr() *syscall.SysProcAttr { return nil }
