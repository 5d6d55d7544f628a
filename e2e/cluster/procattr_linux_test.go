package cluster

import "syscall"

// procAttr has the kernel kill an instance when the test process dies without
// cleaning up (a panic, a timeout, a ^C).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
