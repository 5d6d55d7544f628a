package testredis

import "syscall"

// procAttr has the kernel kill the server when the test process dies without
// cleaning up (a panic, a timeout, a ^C).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
