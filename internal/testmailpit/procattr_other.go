//go:build !linux

package testmailpit

import "syscall"

// procAttr: only Linux can tie mailpit's life to the test process's.
func procAttr() *syscall.SysProcAttr { return nil }
